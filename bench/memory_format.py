"""Channels-last against contiguous weights for the face DCGAN's search step, on this CPU.

One step as the latent search runs it: synthesize a batch from latents that require grad
(weights frozen), then backward. The two memory formats alternate, ``--repeats`` rounds,
so that a busy machine slows both alike. Prints ms per sample for each, and the ratio.

    python bench/memory_format.py [--batch 64] [--repeats 4]
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import machine
from napari_pulse.generators import load


def step_ms(g, z: torch.Tensor, n: int = 3) -> float:
    z = z.clone().requires_grad_()
    g.synthesize(z).sum().backward()  # warm-up
    t = time.perf_counter()
    for _ in range(n):
        z.grad = None
        g.synthesize(z).sum().backward()
    return (time.perf_counter() - t) / n / len(z) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("machine:", machine())
    g = load("faces-dcgan64")
    z = g.sample_latents(args.batch, torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {"contiguous": [], "channels_last": []}
    for _ in range(args.repeats):
        for fmt, memory_format in (
            ("contiguous", torch.contiguous_format),
            ("channels_last", torch.channels_last),
        ):
            g.to(memory_format=memory_format)
            times[fmt].append(step_ms(g, z))
    for fmt, t in times.items():
        print(
            f"faces-dcgan64 fwd+bwd, batch {args.batch}, {fmt}: "
            f"{min(t):.2f} ms/sample (best of {len(t)})"
        )
    print(f"channels_last speed-up: {min(times['contiguous']) / min(times['channels_last']):.2f}x")


if __name__ == "__main__":
    main()
