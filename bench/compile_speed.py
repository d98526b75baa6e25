"""``torch.compile`` of the search's pass: what it costs on a first call and what it gains.

One pass as the search runs it: the ``Renderer`` (the search's arithmetic: bfloat16 where
the CPU computes it natively) synthesises a batch from latents and noise that require
grad (weights frozen), then backward. Prints, for ``--generator``: eager images per
second at ``--batch``; then for ``torch.compile`` of the same renderer, the seconds of
its first call at ``--batch`` (the compile), at a second batch size ``--other`` (which
recompiles with a dynamic batch) and at a third (no further compile), and its images
per second at each. Inductor keeps what it compiled in its cache directory
(``TORCHINDUCTOR_CACHE_DIR``, by default under the temporary directory): ``--fresh``
empties a private one first, so the figures are those of a first call ever; without it,
a second run of this script shows what a warm cache costs. Inductor on a CPU needs a C++
compiler at run time.

    python bench/compile_speed.py [--generator nuclei] [--batch 64] [--threads 2] [--fresh]
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import torch

from harness import begin, parser, report
from napari_pulse.generators import load
from napari_pulse.render import Renderer, pass_dtype


def inputs(gen, n: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    z = gen.sample_latents(n, torch.Generator().manual_seed(0))
    return z, [torch.randn((n, *s)) for s in gen.noise_shapes()]


def one_pass(render, z: torch.Tensor, noise: list[torch.Tensor]) -> None:
    z = z.clone().requires_grad_()
    noise = [x.clone().requires_grad_() for x in noise]
    render(z, noise or None).float().square().mean().backward()


def measure(render, gen, n: int, repeats: int) -> tuple[float, float]:
    """Seconds of the first pass at batch ``n``, and images per second after it (best)."""
    z, noise = inputs(gen, n)
    t = time.perf_counter()
    one_pass(render, z, noise)
    first = time.perf_counter() - t
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        one_pass(render, z, noise)
        best = min(best, time.perf_counter() - t)
    return first, n / best


def main() -> None:
    p = parser(__doc__, generator="nuclei")
    p.set_defaults(threads=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--other", type=int, default=40, help="a second batch size")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--fresh", action="store_true", help="an empty inductor cache")
    args = p.parse_args()
    if args.fresh:
        folder = tempfile.mkdtemp(prefix="napari-pulse-inductor-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    begin(args)
    gen = load(args.generator)
    dtype = pass_dtype("auto", "cpu")
    render = Renderer(gen, gen.channels, gen.resolution, dtype)
    print(f"generator: {args.generator}, passes in {dtype or torch.float32}")
    _, eager = measure(render, gen, args.batch, args.repeats)
    report(f"eager at {args.batch}", images_per_s=eager)
    compiled = torch.compile(render)
    for n in (args.batch, args.other, max(1, args.other // 2 - 3)):
        first, rate = measure(compiled, gen, n, args.repeats)
        report(f"compiled at {n}", first_call_s=first, images_per_s=rate)
    if args.fresh:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
