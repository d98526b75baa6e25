"""Speed of the default search mode, to compare two versions of napari-pulse on one machine.

A fixed workload with every search setting at its default: 4 face-DCGAN images (generator
images, seed 1234) at x8, and one 48x48 tiny-generator mosaic at x4 (overlapping tiles, so
the seam refinement runs). Prints the wall time of each and the low-res PSNR, so that
a change that only adds options can show it neither slows nor changes the default:

    PYTHONPATH=<old checkout>/src python bench/default_speed.py
    python bench/default_speed.py

Run the two one after another on an otherwise idle machine (or both under the same load).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import napari_pulse
from _common import machine
from self_consistency import inputs


def timed(**kwargs) -> tuple[float, float, int]:
    """Wall time, overall low-res PSNR and number of tiles of one ``upscale`` call."""
    t = time.perf_counter()
    r = napari_pulse.upscale(**kwargs)
    return time.perf_counter() - t, float(r.lr_psnr), int(np.size(r.lr_psnr_tiles))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("machine:", machine())
    print("napari_pulse:", napari_pulse.__file__)
    faces = inputs("faces-dcgan64", 8, 4)
    tiny = np.random.default_rng(0).random((48, 48)).astype(np.float32)
    tiny[12:36, 12:36] += 0.5
    napari_pulse.upscale(
        faces[:1], generator="faces-dcgan64", factor=8, steps=2, restarts=2, rgb=True
    )
    for _ in range(args.repeats):
        dt, lr, _ = timed(
            image=faces, generator="faces-dcgan64", factor=8, normalization="range", rgb=True
        )
        print(f"faces-dcgan64 x8, 4 inputs, defaults: {dt:.1f} s, lr_psnr {lr:.2f} dB")
        dt, lr, n = timed(image=tiny, generator="tiny", factor=4)
        print(f"tiny x4, 48x48 ({n} tiles), defaults: {dt:.1f} s, lr_psnr {lr:.2f} dB")


if __name__ == "__main__":
    main()
