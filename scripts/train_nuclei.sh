#!/usr/bin/env bash
# Train the bundled `nuclei` generator: the exact command, data selection and seed.
#
# Data: ../shared/data/nuclei (Kaggle Data Science Bowl 2018 stage 1 train, BBBC038, CC0),
# all PNGs except the 10% held out by `held_out(name, 0.1)` (sha256 of the file name), which
# the evaluation uses. Crops: 64x64 at native pixel size, percentile-normalised per image
# (1st..99.8th, as `upscale` normalises), kept when >= 5% of pixels exceed 0.25, except a
# random 10% kept whatever they hold (empty background exists too).
#
# The run writes $OUT (native .safetensors + .json card), $OUT's checkpoint
# (nuclei.ckpt.pt) and sample grids (nuclei.samples/). Running this again resumes from the
# checkpoint; raise --steps to train longer. To ship: copy the .safetensors and .json into
# src/napari_pulse/data/generators/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-train-runs/nuclei.safetensors}
STEPS=${STEPS:-100000}
THREADS=${THREADS:-1}
DEVICE=${DEVICE:-cpu}
exec .venv/bin/napari-pulse train ../shared/data/nuclei --out "$OUT" \
  --name nuclei --domain "fluorescence nuclei" \
  --resolution 64 --channels 1 --style-dim 128 --n-mlp 4 \
  --widths 4:128,8:128,16:64,32:32,64:16 \
  --normalization percentile --crop-level 0.25 --crop-min-fraction 0.05 --crop-any-share 0.1 \
  --holdout 0.1 --batch 32 --lr 0.002 --r1-gamma 0.1 --r1-every 16 --mixing 0.9 \
  --ema-half-life-kimg 10 --seed 0 --checkpoint-every 250 --steps "$STEPS" \
  --device "$DEVICE" --threads "$THREADS" \
  --training-data "Kaggle Data Science Bowl 2018 stage 1 train (BBBC038), fixed release, 442 of 493 images" \
  --license "CC0 (training data); weights BSD-3-Clause like napari-pulse" "$@"
