#!/usr/bin/env bash
# Set up (scripts/setup.sh), then upscale the bundled 64x64 low-res nuclei field x4 with the
# bundled nuclei generator (the default for grayscale images), writing out/nuclei_x4.tif
# (and its samples and spread). The "fast" preset (150 steps, 16 starts per tile) keeps it to
# a few minutes on a 2-core CPU; drop --steps/--restarts for the full default search.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
.venv/bin/napari-pulse upscale src/napari_pulse/data/nuclei_lr.png -o out/nuclei_x4.tif \
  --factor 4 --steps 150 --restarts 16 --samples 4 --overwrite "$@"
