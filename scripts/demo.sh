#!/usr/bin/env bash
# Set up (scripts/setup.sh), then upscale the bundled 8x8 face x8 with the bundled face
# generator, writing out/face_x8.tif (and samples and spread).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
.venv/bin/napari-pulse upscale src/napari_pulse/data/face_lr.png -o out/face_x8.tif \
  --generator faces-dcgan64 --factor 8 --samples 4 --overwrite "$@"
