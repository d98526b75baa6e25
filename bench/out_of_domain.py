"""Microscopy out of the training domain: latent against intermediate search, x4.

Inputs: a 128x128 crop of the cell image that scikit-image ships in its wheel (another
microscope and modality than the fluorescence nuclei the ``nuclei`` generator learnt), and,
as an in-domain control, a 128x128 crop of a held-out nuclei image (needs ../shared/data).
Each is downscaled x4 (bicubic) and upscaled back in both modes. Prints lr_psnr, success and
the out-of-domain score per input and mode, and writes a figure (rows: inputs; columns:
low-res, latent, intermediate, truth).

    python bench/out_of_domain.py --figure docs/out_of_domain.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

import napari_pulse
from _common import DATA, machine
from napari_pulse.degrade import downscale
from napari_pulse.training.data import list_images


def inputs() -> dict[str, np.ndarray]:
    from skimage.data import cell

    a = cell()
    y, x = (a.shape[0] - 128) // 2, (a.shape[1] - 128) // 2
    found = {"skimage cell (out of domain)": a[y : y + 128, x : x + 128]}
    nuclei = DATA / "nuclei"
    if nuclei.is_dir():
        path = list_images(nuclei, 0.1, "holdout")[1]
        b = np.asarray(Image.open(path).convert("L"))
        y, x = (b.shape[0] - 128) // 2, (b.shape[1] - 128) // 2
        found[f"held-out nuclei {path.stem} (in domain)"] = b[y : y + 128, x : x + 128]
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generator", default="nuclei")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--restarts", type=int, default=16)
    p.add_argument("--figure", type=Path)
    args = p.parse_args()
    print(f"machine: {machine()}")
    print(f"generator {args.generator}, x4 bicubic, {args.steps} steps x {args.restarts} starts")
    rows = []
    for name, hr in inputs().items():
        low = np.clip(np.rint(downscale(hr.astype(np.float32), 4)), 0, 255).astype(np.uint8)
        row = [np.kron(low, np.ones((4, 4), np.uint8))]
        for mode in ("latent", "intermediate"):
            t = time.perf_counter()
            r = napari_pulse.upscale(
                low, generator=args.generator, factor=4, steps=args.steps,
                restarts=args.restarts, mode=mode,
            )  # fmt: skip
            print(
                f"{name}, {mode}: lr_psnr {r.lr_psnr:.1f} dB, success {r.success}, "
                f"out-of-domain score {r.ood_score:.2f} (tiles: median "
                f"{np.median(r.ood_tiles):.2f}), {time.perf_counter() - t:.0f} s"
            )
            row.append(r.image)
        rows.append(np.concatenate([*row, hr], axis=1))
    if args.figure:
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.figure)
        print(f"figure: {args.figure} (columns: low-res, latent, intermediate, truth)")


if __name__ == "__main__":
    main()
