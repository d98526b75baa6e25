"""Make the bundled domain model of ``nuclei`` at x4 (bicubic): what flags foreign images.

Data: BBBC038's training split in ``../shared/data/nuclei`` (the same 10% of files held out
as for the generator and its encoder, by a hash of the file name; 442 files). From each
file, two random 128x128 regions (seed 0), each percentile-normalised (1st..99.8th),
downscaled x4 (bicubic) to a 32x32 uint8 field, and cut into the 16x16 low-res tiles that
``upscale`` searches (9 per field, through the pipeline's own preparation). The fields of
the first half of the files are the reference tiles; those of the other half calibrate
the cut: the 97.5th percentile of their scores, with k = 5 (chosen on these fields in
``bench/domain_flag.py``). Writes ``src/napari_pulse/data/generators/
nuclei.domain-x4-bicubic.safetensors`` (about 220 KB)::

    .venv/bin/python scripts/fit_domain.py [--data ../shared/data/nuclei]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from napari_pulse import domain, pipeline
from napari_pulse.api import check_image
from napari_pulse.bank import fingerprint
from napari_pulse.degrade import downscale
from napari_pulse.options import Options
from napari_pulse.training.data import list_images

ROOT = Path(__file__).resolve().parents[1]
HOLDOUT, REGION, FACTOR, CROPS, SEED, K, QUANTILE = 0.1, 128, 4, 2, 0, 5, 0.975


def low_field(region: np.ndarray) -> np.ndarray:
    """A region, percentile-normalised, as its x4 bicubic uint8 low-res field."""
    a = region.astype(np.float64)
    lo, hi = np.percentile(a, (1, 99.8))
    a = np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1).astype(np.float32)
    return np.clip(np.rint(downscale(a, FACTOR) * 255), 0, 255).astype(np.uint8)


def fields(paths: list[Path], rng: np.random.Generator) -> list[list[np.ndarray]]:
    """Per file, its ``CROPS`` low-res fields."""
    out = []
    for path in paths:
        a = np.asarray(Image.open(path).convert("L"))
        h, w = a.shape
        picks = []
        for _ in range(CROPS):
            y = rng.integers(0, max(1, h - REGION + 1))
            x = rng.integers(0, max(1, w - REGION + 1))
            picks.append(low_field(a[y : y + REGION, x : x + REGION]))
        out.append(picks)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "nuclei")
    p.add_argument("--out", type=Path, default=ROOT / "src/napari_pulse/data/generators")
    args = p.parse_args()
    torch.set_num_threads(1)
    setup = Options(generator="nuclei", factor=FACTOR).resolve(False)

    def tiles(field: np.ndarray) -> torch.Tensor:
        arr, rgb = check_image(field, None)
        _, job = pipeline.prepare(arr, rgb, setup)
        return job.lr_tiles.float().cpu()

    files = list_images(args.data, HOLDOUT, "train")
    per_file = fields(files, np.random.default_rng(SEED))
    half = len(per_file) // 2
    reference = torch.cat([tiles(f) for group in per_file[:half] for f in group])
    calibration = [tiles(f) for group in per_file[half:] for f in group]
    d = setup.degrade
    card = {
        "generator": setup.generator.name,
        "generator_sha256": fingerprint(setup.generator),
        "factor": FACTOR,
        "degradation": d.kind,
        "sigma": d.sigma,
        "low_shape": list(reference.shape[1:]),
        "data": f"{args.data.name}: training split ({len(files)} files, {HOLDOUT:.0%} held out)",
        "fields": f"{CROPS} random {REGION}x{REGION} regions per file, seed {SEED}",
        "reference_files": half,
        "calibration_fields": len(calibration),
        "made_by": "scripts/fit_domain.py",
    }
    model = domain.fit(reference, calibration, K, QUANTILE, card)
    path = args.out / domain.file_name(setup.generator.name, FACTOR, d.kind, d.sigma)
    domain.save(path, model)
    print(f"{path}: {len(reference)} reference tiles, cut {model.cut:.3f}")


if __name__ == "__main__":
    main()
