"""Real faces at x8: the reference PULSE loop against our default search, side by side.

20 faces from ``../shared/data/faces`` (chosen by a fixed seed over file names; nothing was
tuned on them), 128 -> 64 px with our bicubic operator, then x8 bicubic to 8x8 and uint8.
Prints, for each method, the success rate at eps = 2e-3, the median low-res PSNR, the
median PSNR against the 64x64 truth, and the wall time per image.

    python bench/real_faces.py [--n 20]
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
    args = ap.parse_args()
    print("machine:", machine())
    truth, low = faces(args.n)
    target = torch.from_numpy(low.astype(np.float32) / 255).permute(0, 3, 1, 2)
    g = load("faces-dcgan64")

    t = time.perf_counter()
    ref = [reference_pulse(g, target[i], 8, steps=100, seed=i) for i in range(args.n)]
    t_ref = (time.perf_counter() - t) / args.n
    ref_img = np.stack([x.permute(1, 2, 0).numpy() for x, _ in ref])
    report("reference PULSE (1 start)", np.array([m for _, m in ref]), ref_img, truth, t_ref)

    t = time.perf_counter()
    r = napari_pulse.upscale(low, generator="faces-dcgan64", factor=8)
    t_ours = (time.perf_counter() - t) / args.n
    lr_mse = 10 ** (-r.lr_psnr_tiles.reshape(args.n) / 10)
    report(
        f"ours ({r.params['steps']} steps, {r.params['restarts']} starts)",
        lr_mse,
        r.image.astype(np.float32) / 255,
        truth,
        t_ours,
    )

    bicubic = np.stack([_bicubic_up(x) for x in low])
    hr_p = [psnr(float(((a - b) ** 2).mean())) for a, b in zip(bicubic, truth, strict=True)]
    print(f"{'bicubic upsampling':28s} median psnr vs truth {np.median(hr_p):.1f} dB")


def _bicubic_up(low: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(low.astype(np.float32) / 255).permute(2, 0, 1)[None]
    up = torch.nn.functional.interpolate(t, scale_factor=8, mode="bicubic", align_corners=False)
    return up[0].permute(1, 2, 0).clamp(0, 1).numpy()


if __name__ == "__main__":
    main()
