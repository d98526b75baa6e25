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
        return len(_rounds(job)) * job.cfg.blend_steps_for(t) if runs else 0

    def run(self, job: Job, state: State) -> Generator[Progress, None, State]:
        c = state.chosen
        z, noise = per_mosaic(job, c.z), [per_mosaic(job, n) for n in c.noise]
        offsets = {k: per_mosaic(job, o) for k, o in c.offsets.items()}
        mosaic = Mosaic(job.grid, per_mosaic(job, c.images))
        t = len(job.grid)
        steps = job.cfg.blend_steps_for(t)
        if (t > 1 or self.single) and steps > 0:
            rounds = _rounds(job)
            plan = len(rounds) * steps  # as self.plan(job) counts it
            for i, groups in enumerate(rounds):
                events = ticks_as_progress(self.name, i * steps, plan, i + 1, len(rounds))
                work = self._round(job, mosaic, groups, z, noise, offsets)
                best = yield from relay(work, events)
                tiles = torch.tensor([tile for g in groups for tile in g])
                units = (torch.arange(job.n_planes)[:, None] * t + tiles[None]).flatten()
                state = state.spent(units, best.evaluations * job.samples)
        elif job.render.fast is not None:  # the search's images were made in its fast dtype
            for idx in _chunks(job):
                _final(job, mosaic, idx, z, noise, offsets)
        return replace(state, mosaics=mosaic.image())

    def _round(self, job: Job, mosaic: Mosaic, groups: list[list[int]], z, noise, offsets):
        """Refine the tile groups ``groups`` (of one size, regions apart) of every mosaic,
        each on its own region of the mosaics, in one batch."""
        cfg, render, grid = job.cfg, job.render, job.grid
        m, steps = z.shape[0], cfg.blend_steps_for(len(grid))
        lr = cfg.blend_lr_for(len(grid))
        margin = math.ceil(job.degrade.margin / grid.factor)
        targets = job.planes.repeat_interleave(job.samples, dim=0)
        lanes = []
        for g in groups:
            box, read, keep, (y0, y1, x0, x1) = _region(grid, g, margin, job.real_box)
            target = targets[..., y0:y1, x0:x1]
            lanes.append((g, box, read, keep, target, mosaic.fixed(g, box)))
        idx, k = [i for g in groups for i in g], len(groups[0])
        zc = z[:, idx].flatten(0, 1).clone().requires_grad_()
        nc = [n[:, idx].flatten(0, 1).clone() for n in noise]
        oc = {key: o[:, idx].flatten(0, 1) for key, o in offsets.items()}
        params = [zc] + ([n.requires_grad_() for n in nc] if cfg.optimize_noise else [])
        tile_shape = mosaic.tiles.shape[2:]
        geo = render.uses_geocross

        def lane_mse(img: torch.Tensor, g, box, read, keep, target, fixed) -> torch.Tensor:
            blended = mosaic.compose(fixed, g, img, box)[..., read[0], read[1]]
            lr_img = job.degrade(blended)[..., keep[0], keep[1]]
            return (lr_img - target).pow(2).flatten(1).mean(1)

        def objective():
            img = render(zc, nc or None, oc).view(m, len(groups), k, *tile_shape)
            # one unit per mosaic and group: (M, groups) in the rows' order
            mse = torch.stack([lane_mse(img[:, j], *lane) for j, lane in enumerate(lanes)], 1)
            loss = cfg.l2_weight * mse.sum()
            if geo and cfg.geocross_weight:
                loss = loss + cfg.geocross_weight * geocross(zc).sum()
            return loss, mse.flatten(), img

        def project() -> None:
            project_to_sphere(zc, render.vector_dim)
            for n in nc:
                project_to_sphere(n, 1)

        best = yield from optimise(
            params,
            objective,
            steps,
            lambda s: lr * (1 - 0.99 * s / steps),
            project,
            track=[zc, *nc],
            rows=k,
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


#: Images a round of groups side by side holds at most (and never more than a batch).
#: With channels-last activations and bfloat16 kept through the elementwise operations
#: (:mod:`~napari_pulse.generators.stylegan2`), the nuclei generator's forward+backward
#: runs 770 images/s at 32 against 830-840 at 64 on this project's 2-core CPU
#: (``bench/precision.py --batch 32 64``); on the 256x256 field of ``bench/field.py``, 64
#: took 50.4-53.5 s against 54.5 s for 32, at 39.02/0.941 against 38.96/0.940 PSNR/SSIM.
#: (Before those changes 32 was faster: 560-621 against 397-473 images/s.) The search's
#: own width stays 64: at 32 the groups of an image with 4 samples hold 8 tiles, which lost
#: 0.2-0.5 dB and 0.02-0.04 SSIM. GPUs: not measured.
SIDE_BY_SIDE = 64


def _rounds(job: Job) -> list[list[list[int]]]:
    """The groups of :func:`_chunks` refined at once, round by round. As many as fill
    :data:`SIDE_BY_SIDE` images with every mosaic's tile run together, taken a stride
    apart in raster order (each lane sweeps its own part of the image, every group
    fitting to its refined neighbours as in one sweep), when they are of one size and
    their regions apart; the others run alone."""
    chunks = _chunks(job)
    room = min(job.cfg.batch_size, SIDE_BY_SIDE)
    lanes = max(1, room // (job.n_mosaics * len(chunks[0])))
    stride = math.ceil(len(chunks) / lanes)
    if lanes == 1 or stride < 2:
        return [[c] for c in chunks]
    margin = math.ceil(job.degrade.margin / job.grid.factor)
    rounds: list[list[list[int]]] = []
    for r in range(stride):
        together, alone = [chunks[r]], []
        for c in chunks[r + stride :: stride]:
            fits = len(c) == len(chunks[r])
            if fits and all(_apart(job.grid, c, o, margin) for o in together):
                together.append(c)
            else:
                alone.append([c])
        rounds += [together, *alone]
    return rounds


def _apart(grid, a: list[int], b: list[int], margin: int) -> bool:
    """Whether no tile of ``a`` lies in the region of ``b`` and none of ``b`` in ``a``'s."""

    def touches(idx: list[int], other: list[int]) -> bool:
        y0, y1, x0, x1 = _outer(grid, other, margin)
        th, tw = grid.tile
        return any(
            y < y1 and y + th > y0 and x < x1 and x + tw > x0
            for y, x in (grid.origins[i] for i in idx)
        )

    return not touches(a, b) and not touches(b, a)


def _outer(
    grid, idx: list[int], margin: int, within: tuple[int, int, int, int] | None = None
) -> tuple[int, int, int, int]:
    """The low-res extent ``(y0, y1, x0, x1)`` of tiles ``idx``, ``margin`` pixels wider,
    within ``within`` (a low-res extent; the whole grid by default)."""
    y0, y1, x0, x1 = _inner(grid, idx)
    a0, a1, b0, b1 = within or (0, grid.size[0], 0, grid.size[1])
    return max(a0, y0 - margin), min(a1, y1 + margin), max(b0, x0 - margin), min(b1, x1 + margin)


def _inner(grid, idx: list[int]) -> tuple[int, int, int, int]:
    """The low-res bounding box ``(y0, y1, x0, x1)`` of tiles ``idx``."""
    ys = [grid.origins[i][0] for i in idx]
    xs = [grid.origins[i][1] for i in idx]
    return min(ys), max(ys) + grid.tile[0], min(xs), max(xs) + grid.tile[1]


def _region(grid, idx: list[int], margin: int, real: tuple[int, int, int, int]):
    """For tiles ``idx`` and the user's pixels ``real`` (a low-res extent): the high-res
    box they are blended in (their extent, and the user's pixels within a margin for the
    operator), the part of it that is downscaled (those pixels of the user's, relative to
    the box), the part of the downscaled image the tiles own (relative to it), and that
    part's low-res extent ``(y0, y1, x0, x1)``."""
    f = grid.factor
    inner, outer = _inner(grid, idx), _outer(grid, idx, margin, real)
    lo, hi = (outer[0], outer[2]), (outer[1], outer[3])
    b0 = (min(lo[0], inner[0]), min(lo[1], inner[2]))
    b1 = (max(hi[0], inner[1]), max(hi[1], inner[3]))
    box = (slice(b0[0] * f, b1[0] * f), slice(b0[1] * f, b1[1] * f))
    read = tuple(slice((lo[i] - b0[i]) * f, (hi[i] - b0[i]) * f) for i in range(2))
    own = _outer(grid, idx, 0, real)
    keep = (slice(own[0] - lo[0], own[1] - lo[0]), slice(own[2] - lo[1], own[3] - lo[1]))
    return box, read, keep, own
