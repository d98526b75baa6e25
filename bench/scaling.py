"""Scaling: time and peak memory against image size, x4 with the default bundled generator.

Each size (64, 128, 256, 512 low-res pixels square; a smooth random grayscale uint8 image,
fixed seed) is upscaled in its own subprocess with a reduced, fixed search budget, so
that the whole table runs in minutes on a CPU; the budget is printed. Peak memory is the
subprocess's maximum resident set size (``ru_maxrss``); "base" is that size after the
imports and loading the generator, before the upscale. Time should grow no faster than
the number of tiles, and memory should stay bounded.

    python bench/scaling.py [--sizes 64 128 256 512] [--steps 8] [--restarts 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys

import numpy as np

from harness import begin, parser, timed

FACTOR = 4


def image(size: int, seed: int = 0) -> np.ndarray:
    """A smooth random ``(size, size)`` uint8 image (noise low-passed in Fourier space)."""
    rng = np.random.default_rng(seed)
    f = np.fft.fft2(rng.standard_normal((size, size)))
    k = np.fft.fftfreq(size)
    f *= np.exp(-(k[:, None] ** 2 + k[None, :] ** 2) / (2 * 0.05**2))
    x = np.fft.ifft2(f).real
    x = (x - x.min()) / (x.max() - x.min())
    return np.rint(x * 255).astype(np.uint8)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(size: int, steps: int, restarts: int) -> None:
    """Upscale one size and print a JSON line (run in its own process)."""
    import napari_pulse
    from napari_pulse.generators import default_for

    name = default_for(1)
    low = image(size)
    napari_pulse.upscale(low[:8, :8], generator=name, factor=FACTOR, steps=2, restarts=1)
    base = _rss_mb()
    seconds, r = timed(
        napari_pulse.upscale, low, generator=name, factor=FACTOR, steps=steps, restarts=restarts
    )
    tiles = math.prod(r.params["tiles"]["grid"])  # over the border the search adds
    out = {"size": size, "tiles": tiles, "seconds": seconds, "peak_mb": _rss_mb()}
    out.update(base_mb=base, generator=name, shape=list(r.image.shape))
    print(json.dumps(out))


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    begin(args)
    if args.child is not None:
        child(args.child, args.steps, args.restarts)
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    rows = []
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--child", str(size), "--threads", str(args.threads)]
        cmd += ["--steps", str(args.steps), "--restarts", str(args.restarts)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(
        f"generator {rows[0]['generator']}, x{FACTOR}, grayscale uint8, "
        f"--steps {args.steps} --restarts {args.restarts}, one process per size"
    )
    print("| low-res | high-res | tiles | seconds | s per tile | peak MB | base MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        s, hr = r["size"], r["shape"]
        print(
            f"| {s}x{s} | {hr[0]}x{hr[1]} | {r['tiles']} | {r['seconds']:.1f} | "
            f"{r['seconds'] / r['tiles']:.3f} | {r['peak_mb']:.0f} | {r['base_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
