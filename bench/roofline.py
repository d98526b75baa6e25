"""Roofline: the search's achieved GFLOP/s against a plain float32 matmul's, in one run.

FLOPs per image are counted with ``torch.utils.flop_counter.FlopCounterMode`` for one
search step as the latent search executes it (generator, crop, degradation and loss
forward, then backward to the latent) and for a forward pass alone. An ``upscale`` of
``--n`` generator images (``--generator``, ``--factor``; default the face DCGAN at x8; every
search option of ``napari-pulse upscale`` applies) counts the images that actually go
through ``synthesize`` with and without gradient; their FLOPs over the wall time is the
search's rate. The machine's limit is the best of a few square float32 matmuls, at the
same ``--threads``.

    python bench/roofline.py [--n 1]
    python bench/roofline.py --generator nuclei --factor 4 --threads 2
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import napari_pulse
from harness import (
    as_uint8,
    begin,
    describe,
    generator_images,
    matmul_gflops,
    options,
    parser,
    report,
    timed,
)
from napari_pulse.degrade import Degradation
from napari_pulse.generators import load
from napari_pulse.render import Renderer
from napari_pulse.search import SearchConfig, per_sample_loss


def _step_inputs(name: str, factor: int, batch: int):
    g = load(name)
    render = Renderer(g, g.channels, g.resolution)
    degrade = Degradation("bicubic", factor)
    target = torch.rand(batch, g.channels, g.resolution[0] // factor, g.resolution[1] // factor)
    z = torch.randn(batch, *g.latent_shape, requires_grad=True)
    return g, render, degrade, target, z


def flops_per_image(name: str, factor: int, batch: int = 8) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs of one search step, per image."""
    g, render, degrade, target, z = _step_inputs(name, factor, batch)
    noise = [torch.randn(batch, *s, requires_grad=True) for s in g.noise_shapes()] or None
    with FlopCounterMode(display=False) as counter:
        img = degrade(render(z, noise))
        mse = (img - target).pow(2).flatten(1).mean(1)
        loss, _ = per_sample_loss(SearchConfig(), mse, z, render.uses_geocross)
        forward = counter.get_total_flops()
        loss.sum().backward()
    return forward / batch, counter.get_total_flops() / batch


def counted_run(low: np.ndarray, opts) -> tuple[float, int, int]:
    """Wall time of an ``upscale``, and the images synthesised with and without gradient."""
    g = load(opts.generator)
    rows = {True: 0, False: 0}
    plain = g.synthesize

    def counting(latents: torch.Tensor, noise=None, **kwargs) -> torch.Tensor:
        rows[torch.is_grad_enabled()] += latents.shape[0]
        return plain(latents, noise, **kwargs)

    g.synthesize = counting
    try:
        wall, _ = timed(napari_pulse.upscale, low, options=opts)
    finally:
        del g.synthesize
    return wall, rows[True], rows[False]


def generator_gflops(name: str, factor: int, fwd_bwd: float, batch: int = 128) -> float:
    """GFLOP/s of bare search steps at ``batch`` images (no search bookkeeping)."""
    g, render, degrade, target, z = _step_inputs(name, factor, batch)
    noise = [torch.randn(batch, *s, requires_grad=True) for s in g.noise_shapes()] or None

    def step() -> None:
        ((degrade(render(z, noise)) - target) ** 2).mean().backward()

    step()
    times = [timed(step)[0] for _ in range(5)]
    return fwd_bwd * batch / float(np.median(times)) / 1e9


def main() -> None:
    p = parser(__doc__, n=1, generator="faces-dcgan64", factor=8, search=True)
    args = p.parse_args()
    begin(args)
    name, factor = args.generator, args.factor
    low = as_uint8(generator_images(name, factor, args.n))
    opts = options(args, normalization="range", rgb=low.ndim == 4)
    napari_pulse.upscale(low[:1], options=replace(opts, steps=3))  # warm-up
    peak = matmul_gflops()
    fwd, fwd_bwd = flops_per_image(name, factor)
    wall, grad_rows, plain_rows = counted_run(low, opts)
    rate = (grad_rows * fwd_bwd + plain_rows * fwd) / wall / 1e9
    bare = generator_gflops(name, factor, fwd_bwd, opts.resolve(low.ndim == 4).cfg.batch_size)
    peak = max(peak, matmul_gflops())  # again after the run: the better of the two
    print(f"run: {args.n} input(s), {name} x{factor}, {describe(opts)}")
    report("flops per image, forward", gflop=f"{fwd / 1e9:.3f}")
    report("flops per image, forward + backward", gflop=f"{fwd_bwd / 1e9:.3f}")
    report("images synthesised", with_gradient=grad_rows, without=plain_rows)
    report("search", wall_seconds=wall, gflop_per_s=rate)
    report("bare generator steps at the batch size", gflop_per_s=bare)
    report("float32 matmul", gflop_per_s=peak)
    report("roofline fraction (search / matmul)", fraction=f"{rate / peak:.2f}")
    report("bare generator fraction (batch / matmul)", fraction=f"{bare / peak:.2f}")


if __name__ == "__main__":
    main()
