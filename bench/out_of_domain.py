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

from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

import napari_pulse
from harness import (
    DATA,
    begin,
    center_crop,
    describe,
    heldout_nuclei,
    options,
    parser,
    report,
    timed,
)
from napari_pulse.degrade import downscale


def inputs() -> dict[str, np.ndarray]:
    from skimage.data import cell

    found = {"skimage cell (out of domain)": center_crop(cell(), 128)}
    if (DATA / "nuclei").is_dir():
        path = heldout_nuclei()[1]
        b = np.asarray(Image.open(path).convert("L"))
        found[f"held-out nuclei {path.stem} (in domain)"] = center_crop(b, 128)
    return found


def main() -> None:
    p = parser(__doc__, generator="nuclei", search=True)
    p.set_defaults(steps=150, restarts=16)
    p.add_argument("--figure", type=Path)
    args = p.parse_args()
    begin(args)
    opts = options(args, factor=4)
    print(f"generator {args.generator}, x4 bicubic, {describe(opts)}")
    rows = []
    for name, hr in inputs().items():
        low = np.clip(np.rint(downscale(hr.astype(np.float32), 4)), 0, 255).astype(np.uint8)
        row = [np.kron(low, np.ones((4, 4), np.uint8))]
        for mode in ("latent", "intermediate"):
            seconds, r = timed(napari_pulse.upscale, low, options=replace(opts, mode=mode))
            report(
                f"{name}, {mode}",
                lr_psnr_db=r.lr_psnr,
                success=r.success,
                out_of_domain_score=r.ood_score,
                median_tile_score=float(np.median(r.ood_tiles)),
                seconds=seconds,
            )
            row.append(r.image)
        rows.append(np.concatenate([*row, hr], axis=1))
    if args.figure:
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.figure)
        print(f"figure: {args.figure} (columns: low-res, latent, intermediate, truth)")


if __name__ == "__main__":
    main()
