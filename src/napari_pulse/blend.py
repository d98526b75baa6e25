"""The seam refinement: the chosen tiles blended into mosaics, refined on the mosaic's loss.

The chosen tiles of every plane and sample are blended (feathered weights) into one
high-res mosaic, and their latents are refined on the downscaling loss of the *blended
mosaic*, a batch of tiles at a time with the rest fixed, so that no seams appear.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from .events import Progress, relay, ticks_as_progress
from .optim import geocross, optimise, project_to_sphere
from .tiling import Mosaic

if TYPE_CHECKING:
    from .job import Job, State


def per_mosaic(job: Job, x: torch.Tensor) -> torch.Tensor:
    """Per-unit samples ``(U, N, ...)`` as per-mosaic tiles ``(P * N, T, ...)``."""
    t, n = len(job.grid), job.samples
    x = x.view(job.n_planes, t, n, *x.shape[2:]).transpose(1, 2)
    return x.reshape(job.n_planes * n, t, *x.shape[3:])


class SeamBlend:
    """Stage: blend the chosen tiles into mosaics and refine them across tile edges."""

    name = "blend"

    def __init__(self, single: bool = False) -> None:
        #: Also refine an image of one tile (on its own loss): the last part of its fit.
        self.single = single

    def plan(self, job: Job) -> int:
        t = len(job.grid)
        runs = t > 1 or self.single
        return len(_chunks(job)) * job.cfg.blend_steps_for(t) if runs else 0

    def run(self, job: Job, state: State) -> Generator[Progress, None, State]:
        c = state.chosen
        z, noise = per_mosaic(job, c.z), [per_mosaic(job, n) for n in c.noise]
        offsets = {k: per_mosaic(job, o) for k, o in c.offsets.items()}
        mosaic = Mosaic(job.grid, per_mosaic(job, c.images))
        t = len(job.grid)
        steps = job.cfg.blend_steps_for(t)
        chunks = _chunks(job)
        if (t > 1 or self.single) and steps > 0:
            plan = self.plan(job)
            for i, idx in enumerate(chunks):
                events = ticks_as_progress(self.name, i * steps, plan, i + 1, len(chunks))
                best = yield from relay(self._chunk(job, mosaic, idx, z, noise, offsets), events)
                tiles = torch.tensor(idx)
                units = (torch.arange(job.n_planes)[:, None] * t + tiles[None]).flatten()
                state = state.spent(units, best.evaluations * job.samples)
        elif job.render.fast is not None:  # the search's images were made in its fast dtype
            for idx in chunks:
                _final(job, mosaic, idx, z, noise, offsets)
        return replace(state, mosaics=mosaic.image())

    def _chunk(self, job: Job, mosaic: Mosaic, idx: list[int], z, noise, offsets):
        """Refine the tiles ``idx`` of every mosaic on their region of the mosaics."""
        cfg, render, grid = job.cfg, job.render, job.grid
        m, f, steps = z.shape[0], grid.factor, cfg.blend_steps_for(len(grid))
        box, keep, inner = _region(grid, idx, math.ceil(job.degrade.margin / f))
        targets = job.planes.repeat_interleave(job.samples, dim=0)
        target = targets[..., inner[0] : inner[1], inner[2] : inner[3]]
        fixed = mosaic.fixed(idx, box)
        zc = z[:, idx].flatten(0, 1).clone().requires_grad_()
        nc = [n[:, idx].flatten(0, 1).clone() for n in noise]
        oc = {k: o[:, idx].flatten(0, 1) for k, o in offsets.items()}
        params = [zc] + ([n.requires_grad_() for n in nc] if cfg.optimize_noise else [])
        tile_shape = mosaic.tiles.shape[2:]
        geo = render.uses_geocross

        def objective():
            img = render(zc, nc or None, oc).view(m, len(idx), *tile_shape)
            lr_img = job.degrade(mosaic.compose(fixed, idx, img, box))[..., keep[0], keep[1]]
            mse = (lr_img - target).pow(2).flatten(1).mean(1)
            loss = cfg.l2_weight * mse.sum()
            if geo and cfg.geocross_weight:
                loss = loss + cfg.geocross_weight * geocross(zc).sum()
            return loss, mse, img

        def project() -> None:
            project_to_sphere(zc, render.vector_dim)
            for n in nc:
                project_to_sphere(n, 1)

        best = yield from optimise(
            params,
            objective,
            steps,
            lambda s: cfg.blend_lr * (1 - 0.99 * s / steps),
            project,
            track=[zc, *nc],
            rows=len(idx),
        )
        best_z, best_n = best.values[0], best.values[1:]
        z[:, idx] = best_z.view(m, len(idx), *z.shape[2:])
        for n, bn in zip(noise, best_n, strict=True):
            n[:, idx] = bn.view(m, len(idx), *n.shape[2:])
        _final(job, mosaic, idx, z, noise, offsets)
        return best


def _chunks(job: Job) -> list[list[int]]:
    """The tile positions refined together: as many as fill a batch with every mosaic's
    tile (planes x samples), and at most ``SearchConfig.blend_tiles``."""
    t, size = len(job.grid), job.cfg.blend_tiles
    batch = job.cfg.batches(t, job.n_mosaics)
    if size is None or size >= len(batch[0]):
        return batch
    return [list(range(s, min(t, s + size))) for s in range(0, t, max(1, size))]


def _final(job: Job, mosaic: Mosaic, idx: list[int], z, noise, offsets) -> None:
    """Render the tiles ``idx`` of every mosaic from their latents (``(M, T, ...)``), in
    float32 (no gradients), into ``mosaic``."""
    m = z.shape[0]
    with torch.no_grad():
        zc = z[:, idx].flatten(0, 1)
        nc = [n[:, idx].flatten(0, 1) for n in noise]
        oc = {k: o[:, idx].flatten(0, 1) for k, o in offsets.items()}
        final = job.render(zc, nc or None, oc).view(m, len(idx), *mosaic.tiles.shape[2:])
    mosaic.update(idx, final)


def _region(grid, idx: list[int], margin: int):
    """For tiles ``idx``: the high-res box they are refined in (their extent plus a margin
    for the operator), the part of its downscaled image they own, and that part's low-res
    extent ``(y0, y1, x0, x1)``."""
    h, w, f = grid.size[0], grid.size[1], grid.factor
    ys = [grid.origins[i][0] for i in idx]
    xs = [grid.origins[i][1] for i in idx]
    inner = (min(ys), max(ys) + grid.tile[0], min(xs), max(xs) + grid.tile[1])
    outer = (
        max(0, inner[0] - margin),
        min(h, inner[1] + margin),
        max(0, inner[2] - margin),
        min(w, inner[3] + margin),
    )
    box = (slice(outer[0] * f, outer[1] * f), slice(outer[2] * f, outer[3] * f))
    keep = (
        slice(inner[0] - outer[0], inner[1] - outer[0]),
        slice(inner[2] - outer[2], inner[3] - outer[2]),
    )
    return box, keep, inner
