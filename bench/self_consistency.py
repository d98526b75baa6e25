"""Self-consistency: images made by a generator from random latents, downscaled, upscaled back.

Prints, per generator and factor, the low-res PSNR of each of ``--n`` inputs (one stack,
searched in batches) and how many reach the acceptance level (40 dB for the untrained
tiny generator, 35 dB for the face DCGAN). Every search option of ``napari-pulse upscale``
applies (``--steps``, ``--restarts``, ``--bank``, ``--guide``, ``--quick``, ...; finer ones
with ``--set``, e.g. ``--set keep=8 explore_steps=10``).

    python bench/self_consistency.py [--n 20] [--bank 16384 --guide]
    python bench/self_consistency.py --generators faces-dcgan64 --factors 4 --only 0 4 9
"""

from __future__ import annotations

import numpy as np

import napari_pulse
from harness import begin, describe, generator_images, options, parser, report, timed
from napari_pulse.generators import load

LEVEL = {"tiny": 40.0, "faces-dcgan64": 35.0}


def main() -> None:
    p = parser(__doc__, n=20, search=True)
    p.add_argument("--only", type=int, nargs="*", help="indices of the inputs to run")
    p.add_argument("--generators", nargs="+", default=["tiny", "faces-dcgan64"])
    p.add_argument("--factors", nargs="+", type=int, default=[4, 8])
    args = p.parse_args()
    begin(args)
    for name in args.generators:
        for factor in args.factors:
            stack = generator_images(name, factor, args.n)
            if args.only:
                stack = stack[args.only]
            rgb = load(name).channels == 3
            opts = options(args, generator=name, factor=factor, normalization="range", rgb=rgb)
            dt, r = timed(napari_pulse.upscale, stack, options=opts)
            psnr = r.lr_psnr_tiles.reshape(len(stack))
            level = LEVEL.get(name, 35.0)
            report(
                f"{name} x{factor} ({describe(opts)})",
                at_level=f"{int((psnr >= level).sum())}/{len(stack)} >= {level:g} dB",
                median_db=float(np.median(psnr)),
                min_db=float(psnr.min()),
                seconds_per_input=dt / len(stack),
            )
            print("  per input:", " ".join(f"{v:.1f}" for v in psnr))


if __name__ == "__main__":
    main()
