#!/usr/bin/env bash
# The exact commands behind the bundled encoders (src/napari_pulse/data/generators/
# *.encoder-*.safetensors): which generator, factor, data, settings and seed made them.
# Runs resume from their checkpoints in train-runs/ (gitignored); each finished encoder is
# copied beside its bundled generator. THREADS sets torch's threads (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
PULSE=.venv/bin/napari-pulse
mkdir -p train-runs
DEST=src/napari_pulse/data/generators

# nuclei x4 (bicubic): 3000 steps on the generator's own draws, then 3000 on real 16x16
# low-res crops of BBBC038's training split (the same 10% of files held out as for the
# generator, by a hash of the file name), batch 32, seed 0.
"$PULSE" train-encoder ../shared/data/nuclei --generator nuclei --factor 4 \
  --draw-steps 3000 --real-steps 3000 --batch 32 --seed 0 --threads "$THREADS" \
  --out train-runs/nuclei.encoder-x4-bicubic.safetensors --quiet
cp train-runs/nuclei.encoder-x4-bicubic.safetensors "$DEST/"

# faces-dcgan64 x4 and x8 (bicubic): 6000 steps on the generator's own draws only (the faces
# in ../shared/data may not be used for anything that ships), batch 32, seed 0. Their fits
# go on improving slowly past eps, so each card keeps a rung budget measured for it: up to
# 800 steps, and a tile at eps leaves after 100 steps without a 1% gain (patience 8, the
# general default, gave 10/20 inputs at 35 dB or more on bench/self_consistency.py at x4;
# 100 gave 20/20, 2.5 s per input, against 19/20 in 15.5 s from blind starts). The shipped
# files were made with THREADS=1.
for F in 4 8; do
  "$PULSE" train-encoder --generator faces-dcgan64 --factor "$F" \
    --draw-steps 6000 --batch 32 --seed 0 --threads "$THREADS" \
    --rung-steps 800 --rung-patience 100 \
    --out "train-runs/faces-dcgan64.encoder-x$F-bicubic.safetensors" --quiet
  cp "train-runs/faces-dcgan64.encoder-x$F-bicubic.safetensors" "$DEST/"
done
