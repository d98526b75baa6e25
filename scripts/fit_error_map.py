"""Make the bundled expected-error model of ``nuclei`` at x4 (bicubic).

Data: BBBC038's training split in ``../shared/data/nuclei`` (the same 10% of files held out
as for the generator, its encoder and its domain model, by a hash of the file name). One
128x128 region (drawn by the generator card's crop rule) from each of 20 training files
drawn with seed 0, upscaled with the defaults (one sample); see
:mod:`napari_pulse.training.error_map`. The same as ``napari-pulse fit-error-map
../shared/data/nuclei --generator nuclei --factor 4 --out ...``. Writes
``src/napari_pulse/data/generators/nuclei.error-x4-bicubic.json`` (under 2 KB)::

    .venv/bin/python scripts/fit_error_map.py [--data ../shared/data/nuclei]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from napari_pulse import error_map
from napari_pulse.training.error_map import fit_error_map

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "nuclei")
    p.add_argument("--out", type=Path, default=ROOT / "src/napari_pulse/data/generators")
    p.add_argument("--crops", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(2)
    out = args.out / error_map.file_name("nuclei", 4, "bicubic")

    def say(done: int, total: int) -> None:
        print(f"\r{done}/{total} crops", end="", flush=True)

    path = fit_error_map(args.data, "nuclei", 4, crops=args.crops, seed=0, out=out, on_crop=say)
    model = error_map.load(path)
    print(f"\n{path}: weights {model.weights}, fit {model.card['fit']}")


if __name__ == "__main__":
    main()
