"""Make the bundled domain model of ``nuclei`` at x4 (bicubic): what flags foreign images.

Data: BBBC038's training split in ``../shared/data/nuclei`` (the same 10% of files held out
as for the generator and its encoder, by a hash of the file name; 442 files). Settings:
two random 128x128 regions per file (seed 0), k = 5, the cut at the 97.5th percentile of
the calibration fields (chosen on these fields in ``bench/domain_flag.py``); see
:mod:`napari_pulse.training.domain` for the rest. The same as ``napari-pulse fit-domain
../shared/data/nuclei --generator nuclei --factor 4 --out ...``. Writes
``src/napari_pulse/data/generators/nuclei.domain-x4-bicubic.safetensors`` (about 220 KB)::

    .venv/bin/python scripts/fit_domain.py [--data ../shared/data/nuclei]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from napari_pulse import domain
from napari_pulse.training.domain import fit_domain

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "nuclei")
    p.add_argument("--out", type=Path, default=ROOT / "src/napari_pulse/data/generators")
    args = p.parse_args()
    torch.set_num_threads(1)
    out = args.out / domain.file_name("nuclei", 4, "bicubic")
    path = fit_domain(args.data, "nuclei", 4, holdout=0.1, crops=2, seed=0, k=5, out=out)
    model = domain.load(path)
    print(f"{path}: {len(model.reference)} reference tiles, cut {model.cut:.3f}")


if __name__ == "__main__":
    main()
