"""Roofline: the search's achieved GFLOP/s against a plain float32 matmul's, in one run.

FLOPs per image are counted with ``torch.utils.flop_counter.FlopCounterMode`` for one
search step as ``search.py`` executes it (generator, crop, degradation and loss forward,
then backward to the latent) and for a forward pass alone. A default ``upscale`` of
``--n`` face inputs at x8 (faces-dcgan64) counts the images that actually go through
``synthesize`` with and without gradient; their FLOPs over the wall time is the search's
rate. The machine's limit is the best of a few square float32 matmuls (1 thread).

    python bench/roofline.py [--n 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import napari_pulse
from _common import machine
from napari_pulse.degrade import Degradation
from napari_pulse.generators import load
from napari_pulse.search import Renderer, SearchConfig, _per_sample_loss
from speed_vs_reference import FACTOR, NAME, synthetic


def matmul_gflops(sizes: tuple[int, ...] = (512, 1024, 2048), repeats: int = 5) -> float:
    """Best median GFLOP/s of ``n x n`` float32 matmuls."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
        best = max(best, 2 * n**3 / float(np.median(times)) / 1e9)
    return best


def flops_per_image(batch: int = 8) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs of one search step, per image."""
    g = load(NAME)
    render = Renderer(g, g.channels, g.resolution)
    degrade = Degradation("bicubic", FACTOR)
    target = torch.rand(batch, g.channels, g.resolution[0] // FACTOR, g.resolution[1] // FACTOR)
    z = torch.randn(batch, *g.latent_shape, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        loss, _ = _per_sample_loss(SearchConfig(), degrade(render(z, None)), target, z, False)
        forward = counter.get_total_flops()
        loss.sum().backward()
    return forward / batch, counter.get_total_flops() / batch


def counted_run(low: np.ndarray) -> tuple[float, int, int]:
    """Wall time of a default ``upscale``, and the images synthesised with/without gradient."""
    g = load(NAME)
    rows = {True: 0, False: 0}
    plain = g.synthesize

    def counting(latents: torch.Tensor, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        rows[torch.is_grad_enabled()] += latents.shape[0]
        return plain(latents, noise)

    g.synthesize = counting
    try:
        t = time.perf_counter()
        napari_pulse.upscale(low, generator=g, factor=FACTOR)
        wall = time.perf_counter() - t
    finally:
        del g.synthesize
    return wall, rows[True], rows[False]


def generator_gflops(fwd_bwd: float, batch: int = 128, repeats: int = 5) -> float:
    """GFLOP/s of bare search steps at ``batch`` images (no search bookkeeping)."""
    g = load(NAME)
    render = Renderer(g, g.channels, g.resolution)
    degrade = Degradation("bicubic", FACTOR)
    target = torch.rand(batch, g.channels, g.resolution[0] // FACTOR, g.resolution[1] // FACTOR)
    z = torch.randn(batch, *g.latent_shape, requires_grad=True)
    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        ((degrade(render(z, None)) - target) ** 2).mean().backward()
        if i:
            times.append(time.perf_counter() - t)
    return fwd_bwd * batch / float(np.median(times)) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1, help="inputs upscaled in the timed run")
    args = ap.parse_args()
    torch.set_num_threads(1)
    low = synthetic(args.n)
    napari_pulse.upscale(low[:1], generator=NAME, factor=FACTOR, steps=3, restarts=2)  # warm-up
    peak = matmul_gflops()
    fwd, fwd_bwd = flops_per_image()
    wall, grad_rows, plain_rows = counted_run(low)
    flops = grad_rows * fwd_bwd + plain_rows * fwd
    rate = flops / wall / 1e9
    bare = generator_gflops(fwd_bwd)
    peak = max(peak, matmul_gflops())  # again after the run: the better of the two
    cfg = SearchConfig()
    print("machine:", machine())
    print(f"run: {args.n} input(s), {NAME} x{FACTOR}, {cfg.steps} steps, {cfg.restarts} restarts")
    print(f"flops per image, forward: {fwd / 1e9:.3f} GFLOP")
    print(f"flops per image, forward + backward: {fwd_bwd / 1e9:.3f} GFLOP")
    print(f"images synthesised with gradient: {grad_rows}, without: {plain_rows}")
    print(f"search wall time: {wall:.1f} s")
    print(f"search rate: {rate:.1f} GFLOP/s")
    print(f"bare generator steps at batch 128: {bare:.1f} GFLOP/s")
    print(f"float32 matmul: {peak:.1f} GFLOP/s")
    print(f"roofline fraction (search / matmul): {rate / peak:.2f}")
    print(f"bare generator fraction (batch 128 / matmul): {bare / peak:.2f}")


if __name__ == "__main__":
    main()
