#!/usr/bin/env bash
# Train the `histology` generator (RGB brightfield and H&E): the exact command, data
# selection and seed. It does not ship yet: it ships once its realism and usefulness hold up
# (bench/realism.py, bench/heldout_x4.py --per-image 2).
#
# Data: ../shared/data/histology (Kaggle Data Science Bowl 2018 stage 1 train, BBBC038, CC0:
# the brightfield and H&E tiles), all PNGs except the 10% held out by `held_out(name, 0.1)`
# (sha256 of the file name), which the evaluation uses. Crops: 64x64 RGB at native pixel
# size, intensities divided by 255 (`range`, so that stain colours stay as they are), kept
# when >= 5% of pixels (mean over channels) are darker than 0.75: stained cells, not the
# white background, except a random 10% kept whatever they hold.
#
# The run writes $OUT (native .safetensors + .json card), its checkpoint
# (histology.ckpt.pt) and sample grids (histology.samples/). Running this again resumes
# from the checkpoint; raise --steps to train longer. To ship: copy the .safetensors and
# .json into src/napari_pulse/data/generators/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-train-runs/histology.safetensors}
STEPS=${STEPS:-100000}
THREADS=${THREADS:-1}
DEVICE=${DEVICE:-cpu}
exec .venv/bin/napari-pulse train ../shared/data/histology --out "$OUT" \
  --name histology --domain "brightfield and H&E histology" \
  --resolution 64 --channels 3 --style-dim 128 --n-mlp 4 \
  --widths 4:128,8:128,16:64,32:32,64:16 \
  --normalization range --crop-dark --crop-level 0.75 --crop-min-fraction 0.05 \
  --crop-any-share 0.1 \
  --holdout 0.1 --batch 32 --lr 0.002 --r1-gamma 0.1 --r1-every 16 --mixing 0.9 \
  --ema-half-life-kimg 10 --seed 0 --checkpoint-every 250 --steps "$STEPS" \
  --device "$DEVICE" --threads "$THREADS" \
  --training-data "Kaggle Data Science Bowl 2018 stage 1 train (BBBC038), fixed release, brightfield and H&E tiles, 110 of 123 images" \
  --license "CC0 (training data); weights BSD-3-Clause like napari-pulse" "$@"
