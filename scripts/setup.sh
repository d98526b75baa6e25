#!/usr/bin/env bash
# Set up a fresh machine: system packages for napari's GUI tests, a virtual environment in
# .venv with the CPU build of PyTorch, the project with its test extras, and the face
# generator's weights. Safe to run again: it only installs what is missing, and returns at
# once (no pip run) when the environment was set up by this script from the same
# pyproject.toml and setup.sh (a stamp in .venv records their hash; delete
# .venv/.napari-pulse-setup to install again).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v xvfb-run >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 \
    libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-cursor0 \
    libxkbcommon-x11-0 libegl1 libgl1 libfontconfig1 libdbus-1-3 >/dev/null
fi

PY=${PYTHON:-python3}
STAMP=.venv/.napari-pulse-setup
WANT=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d" " -f1)
if [ -x .venv/bin/napari-pulse ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  exit 0
fi
rm -f "$STAMP"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# PyTorch first, pinned to the CPU build: a bare "torch" requirement would pull a CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[testing]"
# The face DCGAN's weights; --no-deps because its own code (never imported) pulls in wandb.
.venv/bin/python -m pip install -q --no-deps gan-face-generate
echo "$WANT" > "$STAMP"
