"""A faithful re-implementation of the reference PULSE loop, to compare against.

Batch 1, one random start per run, Adam (lr 0.4) with PULSE's one-cycle schedule, the
latent re-projected to the sphere after each step, loss 100 * L2 (+ 0.05 * GEOCROSS for
per-layer latents), no early stop, and the *last* step's image is the answer.
"""

from __future__ import annotations

import torch

from napari_pulse.degrade import Degradation
from napari_pulse.generators.base import DomainGenerator
from napari_pulse.optim import geocross, project_to_sphere


def one_cycle(step: int, steps: int) -> float:
    """PULSE's learning-rate multiplier: 0.1 -> 1 at 45%, back to 0.1 at 90%, then to 0.001."""
    x = step / max(1, steps)
    if x < 0.9:
        return (9 * (1 - abs(x / 0.9 - 0.5) * 2) + 1) / 10
    return 0.1 + (x - 0.9) / 0.1 * (0.001 - 0.1)


def reference_pulse(
    g: DomainGenerator, target: torch.Tensor, factor: int, steps: int = 100, seed: int = 0
) -> tuple[torch.Tensor, float]:
    """``target`` ``(C, h, w)`` in [0, 1] -> (the last image ``(C, H, W)``, its low-res MSE)."""
    degrade = Degradation("bicubic", factor)
    vec_dim = len(g.latent_shape)
    z = project_to_sphere(g.sample_latents(1, torch.Generator().manual_seed(seed)), vec_dim)
    z.requires_grad_()
    opt = torch.optim.Adam([z], lr=0.4)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 0.4 * one_cycle(step, steps)
        x = (g.synthesize(z) + 1) / 2
        if g.channels == 3 and target.shape[0] == 1:
            x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        loss = 100 * (degrade(x)[0] - target).pow(2).mean()
        if g.layered:
            loss = loss + 0.05 * geocross(z).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        project_to_sphere(z, vec_dim)
    with torch.no_grad():
        x = (g.synthesize(z) + 1) / 2
        mse = float((degrade(x)[0] - target).pow(2).mean())
    return x[0], mse
