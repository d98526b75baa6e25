"""Channels-last against contiguous weights for the face DCGAN's search step, on this CPU.

One step as the latent search runs it: synthesize a batch from latents that require grad
(weights frozen), then backward. The two memory formats alternate, ``--repeats`` rounds,
so that a busy machine slows both alike. Prints ms per sample for each, and the ratio.
With ``--compile``, also ``torch.compile`` of the channels-last step: its compile time
and its ms per sample.

    python bench/memory_format.py [--batch 64] [--repeats 4] [--compile]
"""

from __future__ import annotations

import time

import torch

from harness import begin, parser, report
from napari_pulse.generators import load


def step_ms(synthesize, z: torch.Tensor, n: int = 3) -> float:
    z = z.clone().requires_grad_()
    synthesize(z).sum().backward()  # warm-up
    t = time.perf_counter()
    for _ in range(n):
        z.grad = None
        synthesize(z).sum().backward()
    return (time.perf_counter() - t) / n / len(z) * 1000


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = p.parse_args()
    begin(args)
    g = load("faces-dcgan64")
    z = g.sample_latents(args.batch, torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {"contiguous": [], "channels_last": []}
    for _ in range(args.repeats):
        for fmt, memory_format in (
            ("contiguous", torch.contiguous_format),
            ("channels_last", torch.channels_last),
        ):
            g.to(memory_format=memory_format)
            times[fmt].append(step_ms(g.synthesize, z))
    for fmt, t in times.items():
        report(
            f"faces-dcgan64 fwd+bwd, batch {args.batch}, {fmt}",
            ms_per_sample=f"{min(t):.2f} (best of {len(t)})",
        )
    speedup = min(times["contiguous"]) / min(times["channels_last"])
    report("channels_last speed-up", ratio=f"{speedup:.2f}x")
    if args.compile:
        g.to(memory_format=torch.channels_last)
        t = time.perf_counter()
        compiled = torch.compile(g.synthesize)
        compiled(z.clone().requires_grad_()).sum().backward()
        print(f"torch.compile, first step (compiling): {time.perf_counter() - t:.1f} s")
        best = min(step_ms(compiled, z) for _ in range(args.repeats))
        print(f"torch.compile, channels_last: {best:.2f} ms/sample (best of {args.repeats})")
        print(
            f"torch.compile speed-up over channels_last: {min(times['channels_last']) / best:.2f}x"
        )


if __name__ == "__main__":
    main()
