"""Self-consistency: images made by a generator from random latents, downscaled, upscaled back.

Prints, per generator and factor, the low-res PSNR of each of ``--n`` inputs (one stack,
searched in batches) and how many reach the acceptance level (40 dB for the untrained
tiny generator, 35 dB for the face DCGAN).

    python bench/self_consistency.py [--n 20] [--steps 400] [--restarts 96]
        [--bank 16384 --guide]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import napari_pulse
from _common import machine
from napari_pulse.degrade import downscale
from napari_pulse.generators import load
from napari_pulse.search import SearchConfig

LEVEL = {"tiny": 40.0, "faces-dcgan64": 35.0}


def inputs(name: str, factor: int, n: int, seed: int = 1234) -> np.ndarray:
    g = load(name)
    with torch.no_grad():
        hr = (
            (g.synthesize(g.sample_latents(n, torch.Generator().manual_seed(seed))) + 1) / 2
        ).numpy()
    lr = [downscale(h.transpose(1, 2, 0) if g.channels == 3 else h[0], factor) for h in hr]
    return np.clip(np.stack(lr), 0, 1).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--restarts", type=int, default=96)
    ap.add_argument("--keep", type=int, default=4, help="starts refined after exploring")
    ap.add_argument("--explore-steps", type=int, default=SearchConfig.explore_steps)
    ap.add_argument("--mid-steps", type=int, default=SearchConfig.mid_steps)
    ap.add_argument("--mid-keep", type=int, default=SearchConfig.mid_keep)
    ap.add_argument("--bank", type=int, default=SearchConfig.bank, help="warm-start bank size")
    ap.add_argument("--guide", action="store_true", help="guided starts (fitted on the bank)")
    ap.add_argument("--only", type=int, nargs="*", help="indices of the inputs to run")
    ap.add_argument("--generators", nargs="+", default=["tiny", "faces-dcgan64"])
    ap.add_argument("--factors", nargs="+", type=int, default=[4, 8])
    args = ap.parse_args()
    print("machine:", machine())
    for name in args.generators:
        for factor in args.factors:
            stack = inputs(name, factor, args.n)
            if args.only:
                stack = stack[args.only]
            n = len(stack)
            cfg = SearchConfig(
                keep=args.keep,
                explore_steps=args.explore_steps,
                mid_steps=args.mid_steps,
                mid_keep=args.mid_keep,
                bank=args.bank,
                guide=args.guide,
            )
            t = time.perf_counter()
            r = napari_pulse.upscale(
                stack,
                generator=name,
                factor=factor,
                steps=args.steps,
                restarts=args.restarts,
                config=cfg,
                normalization="range",
                rgb=load(name).channels == 3,
            )
            dt = time.perf_counter() - t
            p = r.lr_psnr_tiles.reshape(n)
            level = LEVEL.get(name, 35.0)
            print(
                f"{name} x{factor}: {int((p >= level).sum())}/{n} >= {level:g} dB, "
                f"median {np.median(p):.1f} dB, min {p.min():.1f} dB, "
                f"{dt / n:.2f} s per input ({args.steps} steps, {args.restarts} restarts, "
                f"explore {args.explore_steps}, mid {args.mid_steps}x{args.mid_keep}, "
                f"keep {args.keep}, bank {args.bank}{', guided' if args.guide else ''})"
            )
            print("  per input:", " ".join(f"{v:.1f}" for v in p))


if __name__ == "__main__":
    main()
