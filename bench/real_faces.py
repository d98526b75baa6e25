"""Real faces at x8: the reference PULSE loop against our default search, side by side.

20 faces from ``../shared/data/faces`` (chosen by a fixed seed over file names; nothing was
tuned on them), 128 -> 64 px with our bicubic operator, then x8 bicubic to 8x8 and uint8.
Prints, for each method, the success rate at eps = 2e-3, the median low-res PSNR, the
median PSNR against the 64x64 truth, and the wall time per image.

    python bench/real_faces.py [--n 20]
    python bench/real_faces.py --n 50 --no-reference --modes latent intermediate \
        --grid docs/faces_intermediate.png
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

import napari_pulse
from _common import DATA, machine, psnr, split
from napari_pulse.degrade import downscale
from napari_pulse.generators import load
from napari_pulse.intermediate import IntermediateConfig
from napari_pulse.search import SearchConfig
from reference_pulse import reference_pulse

EPS = 2e-3


def faces(n: int) -> tuple[np.ndarray, np.ndarray]:
    truth, low = [], []
    for path in split(DATA / "faces", n, pattern="*.jpg"):
        hr = downscale(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255, 2)
        truth.append(np.clip(hr, 0, 1))
        low.append(np.clip(np.rint(downscale(hr, 8) * 255), 0, 255).astype(np.uint8))
    return np.stack(truth), np.stack(low)


def report(
    name: str, lr_mse: np.ndarray, hr: np.ndarray, truth: np.ndarray, seconds: float
) -> None:
    lr_p = np.array([psnr(m) for m in lr_mse])
    hr_p = np.array([psnr(float(((a - b) ** 2).mean())) for a, b in zip(hr, truth, strict=True)])
    print(
        f"{name:28s} success {int((lr_mse <= EPS).sum())}/{len(lr_mse)}, "
        f"median lr_psnr {np.median(lr_p):.1f} dB, median psnr vs truth {np.median(hr_p):.1f} dB, "
        f"{seconds:.2f} s per image"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--modes", nargs="+", default=["latent"], choices=["latent", "intermediate"])
    ap.add_argument("--no-reference", action="store_true", help="skip the reference loop")
    ap.add_argument("--steps", type=int, default=SearchConfig.steps)
    ap.add_argument("--restarts", type=int, default=SearchConfig.restarts)
    ap.add_argument("--radius", type=float, default=IntermediateConfig.radius)
    ap.add_argument("--layers", type=int, nargs="*", help="feature maps (default: the mode's)")
    ap.add_argument("--feature-steps", type=int, default=IntermediateConfig.steps)
    ap.add_argument("--bank", type=int, default=SearchConfig.bank, help="warm-start bank size")
    ap.add_argument("--guide", action="store_true", help="guided starts (fitted on the bank)")
    ap.add_argument("--grid", help="PNG: rows of low-res / latent / intermediate / truth")
    args = ap.parse_args()
    print("machine:", machine())
    truth, low = faces(args.n)
    target = torch.from_numpy(low.astype(np.float32) / 255).permute(0, 3, 1, 2)
    g = load("faces-dcgan64")

    if not args.no_reference:
        t = time.perf_counter()
        ref = [reference_pulse(g, target[i], 8, steps=100, seed=i) for i in range(args.n)]
        t_ref = (time.perf_counter() - t) / args.n
        ref_img = np.stack([x.permute(1, 2, 0).numpy() for x, _ in ref])
        report("reference PULSE (1 start)", np.array([m for _, m in ref]), ref_img, truth, t_ref)

    outputs = {}
    for mode in args.modes:
        icfg = IntermediateConfig(
            radius=args.radius,
            layers=tuple(args.layers) if args.layers else None,
            steps=args.feature_steps,
        )
        t = time.perf_counter()
        r = napari_pulse.upscale(
            low,
            generator="faces-dcgan64",
            factor=8,
            steps=args.steps,
            restarts=args.restarts,
            mode=mode,
            intermediate=icfg,
            config=SearchConfig(bank=args.bank, guide=args.guide),
        )
        t_ours = (time.perf_counter() - t) / args.n
        lr_mse = 10 ** (-r.lr_psnr_tiles.reshape(args.n) / 10)
        extra = ""
        if mode == "intermediate":
            inter = r.params["intermediate"]
            extra = f", layers {inter['layers']}, radius {inter['radius']}"
        report(
            f"ours, {mode} ({r.params['steps']} steps, {r.params['restarts']} starts, "
            f"bank {args.bank}{', guided' if args.guide else ''}{extra})",
            lr_mse,
            r.image.astype(np.float32) / 255,
            truth,
            t_ours,
        )
        if mode == "intermediate":
            ood = r.ood_tiles.reshape(args.n)
            print(f"  out-of-domain score: median {np.median(ood):.2f}, max {ood.max():.2f}")
        outputs[mode] = r.image.astype(np.float32) / 255

    bicubic = np.stack([_bicubic_up(x) for x in low])
    hr_p = [psnr(float(((a - b) ** 2).mean())) for a, b in zip(bicubic, truth, strict=True)]
    print(f"{'bicubic upsampling':28s} median psnr vs truth {np.median(hr_p):.1f} dB")
    if args.grid:
        lows = np.stack([np.kron(x.astype(np.float32) / 255, np.ones((8, 8, 1))) for x in low])
        columns = [lows, *outputs.values(), truth]
        rows = [np.concatenate([c[i] for c in columns], axis=1) for i in range(min(args.n, 12))]
        grid = np.clip(np.rint(np.concatenate(rows, axis=0) * 255), 0, 255).astype(np.uint8)
        Image.fromarray(grid).save(args.grid)
        print(f"grid: {args.grid} (columns: low-res, {', '.join(outputs)}, truth)")


def _bicubic_up(low: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(low.astype(np.float32) / 255).permute(2, 0, 1)[None]
    up = torch.nn.functional.interpolate(t, scale_factor=8, mode="bicubic", align_corners=False)
    return up[0].permute(1, 2, 0).clamp(0, 1).numpy()


if __name__ == "__main__":
    main()
