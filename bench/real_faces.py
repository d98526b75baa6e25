"""Real faces at x8: the reference PULSE loop against our search, side by side.

``--n`` faces from ``../shared/data/faces`` (chosen by a fixed seed over file names; nothing
was tuned on them), 128 -> 64 px with our bicubic operator, then x8 bicubic to 8x8 and
uint8. Prints, for each method, the success rate at eps = 2e-3, the median low-res PSNR,
the median PSNR against the 64x64 truth, and the wall time per image. Every search option
of ``napari-pulse upscale`` applies to ours; ``--modes`` runs several modes in turn.

    python bench/real_faces.py [--n 20]
    python bench/real_faces.py --n 50 --no-reference --modes latent intermediate \
        --grid docs/faces_intermediate.png
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

import napari_pulse
from harness import (
    EPS,
    begin,
    describe,
    options,
    parser,
    psnr,
    real_faces,
    report,
    tile_mse,
    timed,
)
from napari_pulse.evaluate import bicubic_up
from napari_pulse.generators import load
from reference_pulse import reference_pulse


def summary(name: str, lr_mse: np.ndarray, hr: np.ndarray, truth: np.ndarray, seconds: float):
    """One report line: success at eps, median lr_psnr and PSNR against the truth, time."""
    hr_p = [psnr(float(((a - b) ** 2).mean())) for a, b in zip(hr, truth, strict=True)]
    report(
        name,
        success=f"{int((lr_mse <= EPS).sum())}/{len(lr_mse)}",
        median_lr_psnr_db=float(np.median([psnr(m) for m in lr_mse])),
        median_psnr_vs_truth_db=float(np.median(hr_p)),
        seconds_per_image=seconds,
    )


def reference(low: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """One reference PULSE start (100 steps) per face: seconds, low-res MSEs, images."""
    g = load("faces-dcgan64")
    target = torch.from_numpy(low.astype(np.float32) / 255).permute(0, 3, 1, 2)
    seconds, runs = timed(
        lambda: [reference_pulse(g, target[i], 8, steps=100, seed=i) for i in range(len(low))]
    )
    images = np.stack([x.permute(1, 2, 0).numpy() for x, _ in runs])
    return seconds, np.array([m for _, m in runs]), images


def main() -> None:
    p = parser(__doc__, n=20, search=True)
    p.add_argument("--modes", nargs="+", default=["latent"], choices=["latent", "intermediate"])
    p.add_argument("--no-reference", action="store_true", help="skip the reference loop")
    p.add_argument("--grid", help="PNG: rows of low-res / each mode / truth")
    args = p.parse_args()
    begin(args)
    truth, low = real_faces(args.n)
    if not args.no_reference:
        seconds, mse, images = reference(low)
        summary("reference PULSE (1 start)", mse, images, truth, seconds / args.n)
    outputs = {}
    for mode in args.modes:
        opts = options(args, generator="faces-dcgan64", factor=8, mode=mode)
        seconds, r = timed(napari_pulse.upscale, low, options=opts)
        extra = ""
        if mode == "intermediate":
            inter = r.params["intermediate"]
            extra = f", layers {inter['layers']}, radius {inter['radius']}"
        outputs[mode] = r.image.astype(np.float32) / 255
        label = f"ours ({describe(opts)}{extra})"
        summary(label, tile_mse(r), outputs[mode], truth, seconds / args.n)
        if mode == "intermediate":
            ood = r.ood_tiles.reshape(args.n)
            report("  out-of-domain score", median=float(np.median(ood)), max=float(ood.max()))
    bicubic = np.stack([bicubic_up(x.astype(np.float32) / 255, truth.shape[1:3]) for x in low])
    hr_p = [psnr(float(((a - b) ** 2).mean())) for a, b in zip(bicubic, truth, strict=True)]
    report("bicubic upsampling", median_psnr_vs_truth_db=float(np.median(hr_p)))
    if args.grid:
        lows = np.stack([np.kron(x.astype(np.float32) / 255, np.ones((8, 8, 1))) for x in low])
        columns = [lows, *outputs.values(), truth]
        rows = [np.concatenate([c[i] for c in columns], axis=1) for i in range(min(args.n, 12))]
        grid = np.clip(np.rint(np.concatenate(rows, axis=0) * 255), 0, 255).astype(np.uint8)
        Image.fromarray(grid).save(args.grid)
        print(f"grid: {args.grid} (columns: low-res, {', '.join(outputs)}, truth)")


if __name__ == "__main__":
    main()
