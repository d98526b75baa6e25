#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the linter and the test suite under a virtual display.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests bench scripts
.venv/bin/python -m pytest -q "$@"
