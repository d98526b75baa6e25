#!/usr/bin/env bash
# Set up (scripts/setup.sh), then upscale the bundled 64x64 low-res nuclei field x4 with the
# bundled nuclei generator (the default for grayscale images) and every setting at its
# default, writing out/nuclei_x4.tif and out/nuclei_x4_error.tif (its expected error: where
# it is most likely wrong). Every tile starts from the bundled encoder's guess,
# so this takes under half a minute on a 2-core CPU. Add --samples 4 for four samples and
# their spread (out/nuclei_x4_samples.tif, out/nuclei_x4_std.tif).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
.venv/bin/napari-pulse upscale src/napari_pulse/data/nuclei_lr.png -o out/nuclei_x4.tif \
  --factor 4 --overwrite "$@"
