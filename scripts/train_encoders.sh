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

# No encoder ships for faces-dcgan64: one trained on its own draws (6000 steps, batch 32,
# seed 0; the faces in ../shared/data may not be used for anything that ships) made the
# defaults lose reach: bench/self_consistency.py at x8 gave 11/20 inputs >= 35 dB against
# 20/20 from blind starts (14/20 with 150 steps and patience 25), at x4 4/20 against 16/20.
