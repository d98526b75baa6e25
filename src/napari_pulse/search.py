"""The latent search: PULSE on the sphere, batched restarts, best-so-far tracking, seam-free tiles.

Two phases, both Python generators that yield :class:`~napari_pulse.events.Progress`
after every optimiser step (so a consumer can cancel between steps):

1. ``search``: every low-res tile is fitted on its own by successive halving: its
   ``restarts`` random starts explore together in batches for a few steps at a high
   learning rate, then the ``keep`` best refine for the rest of ``steps`` at a lower one.
   Each start is judged on its own; the best latents and images of every start are kept
   across steps (not the last step's).
2. ``blend``: the chosen tiles are blended into one high-res mosaic per plane and
   sample, and their latents are refined on the downscaling loss of the *blended
   mosaic*, a batch of tiles at a time with the rest fixed, so that no seams appear.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from functools import partial

import torch
import torch.nn.functional as F

from .degrade import Degradation
from .events import Progress
from .generators.base import DomainGenerator
from .tiling import Mosaic, TileGrid

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601: how an RGB generator's image becomes grayscale


@dataclass(frozen=True)
class SearchConfig:
    """Settings of the search (see the module docstring for the two phases)."""

    steps: int = 400  # optimiser steps of a kept start: exploring, then refining
    restarts: int = 96  # random starts per tile, explored together in batches
    samples: int = 1
    eps: float = 2e-3
    explore_steps: int = 25
    explore_lr: float = 0.2
    keep: int = 4  # starts per tile refined after exploring (at least ``samples``)
    refine_lr: float = 0.1
    #: An optional middle rung of successive halving: the best ``mid_keep`` explored starts
    #: go on for ``mid_steps`` more steps before the ``keep`` best are chosen. 0: off.
    mid_steps: int = 0
    mid_keep: int = 16
    mid_lr: float = 0.1
    l2_weight: float = 100.0
    l1_weight: float = 0.0
    geocross_weight: float = 0.05  # only for generators whose latent calls for it
    blend_steps: int | None = None  # seam refinement steps; None: steps // 4; 0: off
    blend_lr: float = 0.05
    patience: int = 25
    early_stop: bool = True
    optimize_noise: bool = True
    batch_size: int = 128  # generator images per forward pass
    #: Warm starts: each tile's starts are its nearest of ``bank`` prior draws (low-res
    #: MSE; see :mod:`napari_pulse.bank`). 0: blind random starts.
    bank: int = 0
    #: A quick wave first (needs ``bank``): each tile's nearest bank starts, on the small
    #: budget of :meth:`quick_wave`; only tiles still above eps then get the search set
    #: by the fields above, from blind random starts.
    quick: bool = False
    #: Guided starts (needs ``bank``; 16384 recommended): a small network fitted on the
    #: bank guesses each tile's latent, and the search's starts spread from that guess to
    #: blind random directions (see :mod:`napari_pulse.guide`).
    guide: bool = False

    def quick_wave(self) -> SearchConfig:
        """The quick wave's settings: 8 starts (at least ``samples``) explore 5 steps at a
        learning rate of 0.1, and the best of each tile refines to 100 steps."""
        return replace(
            self,
            steps=100,
            restarts=max(8, self.samples),
            explore_steps=5,
            explore_lr=0.1,
            keep=1,
            mid_steps=0,
            quick=False,
            guide=False,
        )

    @property
    def n_keep(self) -> int:
        return min(self.restarts, max(self.samples, self.keep))

    @property
    def n_explore_steps(self) -> int:
        return min(self.steps, self.explore_steps)

    def stages(self) -> list[tuple[int, int, float, int]]:
        """Successive-halving rungs: (starts in, steps, learning rate, starts kept)."""
        explore = self.n_explore_steps
        mid = min(self.mid_steps, self.steps - explore)
        rungs: list[tuple[int, int, float, int]] = []
        if mid > 0:
            mid_keep = min(self.restarts, max(self.mid_keep, self.n_keep))
            rungs.append((self.restarts, explore, self.explore_lr, mid_keep))
            rungs.append((mid_keep, mid, self.mid_lr, self.n_keep))
        else:
            rungs.append((self.restarts, explore, self.explore_lr, self.n_keep))
        refine = self.steps - explore - max(mid, 0)
        if refine > 0:
            rungs.append((self.n_keep, refine, self.refine_lr, self.n_keep))
        return rungs

    @property
    def n_blend_steps(self) -> int:
        return self.steps // 4 if self.blend_steps is None else self.blend_steps

    def batches(self, n_units: int, rows_per_unit: int) -> list[list[int]]:
        """Units grouped so that a group has at most ``batch_size`` rows (at least one unit)."""
        per = max(1, self.batch_size // rows_per_unit)
        return [list(range(s, min(n_units, s + per))) for s in range(0, n_units, per)]


def cosine(step: int, steps: int) -> float:
    """Learning-rate multiplier falling from 1 to 0 over ``steps`` (half a cosine)."""
    return 0.5 * (1 + math.cos(math.pi * step / max(1, steps)))


def project_to_sphere(t: torch.Tensor, start_dim: int) -> torch.Tensor:
    """Rescale every vector (the dims from ``start_dim`` on) to norm sqrt(its size), in place."""
    flat = t.flatten(start_dim)
    radius = math.sqrt(flat.shape[-1])
    flat = F.normalize(flat, dim=-1) * radius
    with torch.no_grad():
        t.copy_(flat.view_as(t))
    return t


def geocross(latents: torch.Tensor) -> torch.Tensor:
    """Mean squared geodesic angle between the per-layer vectors of ``(B, L, D)`` latents."""
    b, n_layers, _ = latents.shape
    if n_layers < 2:
        return latents.new_zeros(b)
    u = F.normalize(latents, dim=-1)
    i, j = torch.triu_indices(n_layers, n_layers, 1, device=latents.device)
    chord = (u[:, i] - u[:, j]).norm(dim=-1)
    angle = 2 * torch.asin((chord / 2).clamp(max=1.0))
    return (angle**2).mean(dim=1)


class Renderer:
    """Latents -> generator images in [0, 1] with the input's channels, cropped to the tile."""

    def __init__(self, generator: DomainGenerator, channels: int, crop: tuple[int, int]) -> None:
        self.g = generator
        self.channels = channels
        gh, gw = generator.resolution
        self.crop = crop
        self.offset = ((gh - crop[0]) // 2, (gw - crop[1]) // 2)

    def __call__(
        self,
        z: torch.Tensor,
        noise: list[torch.Tensor] | None,
        offsets: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if offsets:  # feature-map offsets of the intermediate search
            x = (self.g.synthesize(z, noise, offsets=offsets) + 1) / 2
        else:
            x = (self.g.synthesize(z, noise) + 1) / 2
        if self.g.channels == 3 and self.channels == 1:
            luma = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x * luma).sum(dim=1, keepdim=True)
        oy, ox = self.offset
        return x[..., oy : oy + self.crop[0], ox : ox + self.crop[1]]


@dataclass
class Candidates:
    """The best state of every start of every unit: ``(U, K, ...)`` tensors."""

    z: torch.Tensor
    noise: list[torch.Tensor]
    mse: torch.Tensor
    images: torch.Tensor | None  # None for starts that have not run yet


def _per_sample_loss(
    cfg: SearchConfig, lr_images: torch.Tensor, target: torch.Tensor, z: torch.Tensor, layered: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    diff = lr_images - target
    mse = diff.pow(2).flatten(1).mean(1)
    loss = cfg.l2_weight * mse
    if cfg.l1_weight:
        loss = loss + cfg.l1_weight * diff.abs().flatten(1).mean(1)
    if layered and cfg.geocross_weight:
        loss = loss + cfg.geocross_weight * geocross(z)
    return loss, mse


def _fit(
    render: Renderer,
    degrade: Degradation,
    target: torch.Tensor,
    z: torch.Tensor,
    noise: list[torch.Tensor],
    cfg: SearchConfig,
    steps: int,
    lr_at: Callable[[int], float],
    group: int,
    tick: Callable[[int, float], Progress],
    on_step: Callable[[Candidates], None] | None = None,
) -> Generator[Progress, None, Candidates]:
    """Adam on the sphere for ``steps`` steps; rows come in groups of ``group`` per unit.

    Returns the best state of every row over all steps (the last update included).
    """
    vec_dim = len(render.g.latent_shape)  # latent vectors start at this dim of (B, ...)
    layered = render.g.layered and render.g.geocross
    z = z.clone().requires_grad_()
    noise = [n.clone() for n in noise]
    params = [z] + ([n.requires_grad_() for n in noise] if cfg.optimize_noise else [])
    opt = torch.optim.Adam(params, lr=lr_at(0))
    rows = z.shape[0]
    best = Candidates(
        z=z.detach().clone(),
        noise=[n.detach().clone() for n in noise],
        mse=torch.full((rows,), math.inf, device=z.device),
        images=torch.zeros((rows, render.channels, *render.crop), device=z.device),
    )
    units = rows // group
    unit_best = torch.full((units,), math.inf, device=z.device)
    last_gain = torch.zeros(units, dtype=torch.long, device=z.device)
    for step in range(steps + 1):
        final = step == steps  # one more look at the last update, without a step
        with torch.set_grad_enabled(not final):
            img = render(z, noise or None)
            loss, mse = _per_sample_loss(cfg, degrade(img), target, z, layered)
        with torch.no_grad():
            better = mse < best.mse
            best.mse = torch.where(better, mse.detach(), best.mse)
            best.z[better] = z.detach()[better]
            for bn, n in zip(best.noise, noise, strict=True):
                bn[better] = n.detach()[better]
            best.images[better] = img.detach()[better]
            ub = best.mse.view(units, group).min(dim=1).values
            gained = ub < unit_best * 0.99
            last_gain = torch.where(gained, torch.full_like(last_gain, step), last_gain)
            unit_best = torch.minimum(unit_best, ub)
        if final:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        project_to_sphere(z, vec_dim)
        for n in noise:
            project_to_sphere(n, 1)
        if on_step is not None:
            on_step(best)
        yield tick(step + 1, float(unit_best.max()))
        # Settled: succeeded, and no longer improving or far below eps (100x: +20 dB).
        settled = (unit_best <= cfg.eps) & (
            (step - last_gain >= cfg.patience) | (unit_best <= cfg.eps * 0.01)
        )
        if cfg.early_stop and bool(settled.all()):
            break
    return best


def search(
    render: Renderer,
    degrade: Degradation,
    targets: torch.Tensor,
    z0: torch.Tensor,
    noise0: list[torch.Tensor],
    cfg: SearchConfig,
    progress: dict,
    live: torch.Tensor | None = None,
    label: str = "search",
) -> Generator[Progress, None, Candidates]:
    """Phase 1: fit every unit ``targets[u]`` ``(C, h, w)`` from starts ``z0[u]`` ``(K, ...)``.

    Successive halving: all ``K`` starts explore for ``explore_steps`` (a high, decaying
    learning rate); optionally the ``mid_keep`` best go on for ``mid_steps``; the ``keep``
    best of each unit then refine for the rest of ``steps`` from their best state.
    Returns ``(U, keep, ...)`` candidates, best first. ``live`` (``(U, C, H, W)``), when
    given, holds every unit's best image so far, step by step.
    """
    n_units, k = z0.shape[:2]
    vec_dim = len(render.g.latent_shape)
    z0 = project_to_sphere(z0.clone(), vec_dim + 1)
    noise0 = [project_to_sphere(n.clone(), 2) for n in noise0]

    def run(stage_cands: Candidates, per_unit: int, steps: int, lr: float, keep: int):
        """Optimise ``(U, per_unit, ...)`` candidates batch by batch, keeping the ``keep``
        best of each unit as each batch ends (so memory stays bounded); yields progress."""
        batches = cfg.batches(n_units, per_unit)
        parts = []
        for b, units in enumerate(batches):
            sel = torch.tensor(units, device=z0.device)
            start = progress["done"]

            def tick(step: int, worst: float, start: int = start, b: int = b) -> Progress:
                progress["done"] = start + step
                return Progress(
                    label, progress["done"], progress["total"], b + 1, len(batches), worst
                )

            found = yield from _fit(
                render,
                degrade,
                targets[sel].repeat_interleave(per_unit, dim=0),
                stage_cands.z[sel].flatten(0, 1),
                [n[sel].flatten(0, 1) for n in stage_cands.noise],
                cfg,
                steps,
                lambda s: lr * cosine(s, steps),
                per_unit,
                tick,
                None if live is None else partial(_publish, live, sel, per_unit),
            )
            progress["done"] = start + steps
            parts.append(_best(_unflat(found, len(units), per_unit), keep))
        return Candidates(
            torch.cat([p.z for p in parts]),
            [torch.cat(ns) for ns in zip(*[p.noise for p in parts], strict=True)],
            torch.cat([p.mse for p in parts]),
            torch.cat([p.images for p in parts]),
        )

    kept = Candidates(z0, noise0, torch.full((n_units, k), math.inf, device=z0.device), None)
    for per_unit, steps, lr, keep in cfg.stages():
        # Each rung starts from the best states of the last, so it can only improve on them.
        kept = yield from run(kept, min(per_unit, k), steps, lr, keep)
    return kept


def _publish(live: torch.Tensor, sel: torch.Tensor, per_unit: int, best: Candidates) -> None:
    """Copy each unit's best image so far into ``live``."""
    mse = best.mse.view(len(sel), per_unit)
    images = best.images.view(len(sel), per_unit, *best.images.shape[1:])
    live[sel] = images[torch.arange(len(sel), device=mse.device), mse.argmin(dim=1)]


def _unflat(c: Candidates, n_units: int, per_unit: int) -> Candidates:
    """Flat rows back to ``(n_units, per_unit, ...)`` candidates."""

    def unflat(t: torch.Tensor) -> torch.Tensor:
        return t.view(n_units, per_unit, *t.shape[1:])

    return Candidates(unflat(c.z), [unflat(n) for n in c.noise], unflat(c.mse), unflat(c.images))


def _best(c: Candidates, n: int) -> Candidates:
    """The ``n`` lowest-MSE candidates of every unit, best first."""
    order = c.mse.argsort(dim=1)[:, :n]
    units = torch.arange(order.shape[0], device=order.device)[:, None]
    return Candidates(
        c.z[units, order],
        [x[units, order] for x in c.noise],
        c.mse[units, order],
        c.images[units, order],
    )


def merge(first: Candidates, second: Candidates, units: torch.Tensor) -> Candidates:
    """``first`` with the candidates of ``units`` replaced by the best of both searches
    (``second`` holds one row per entry of ``units``); as many per unit as ``first``."""
    k = first.mse.shape[1]
    both = _best(
        Candidates(
            torch.cat([first.z[units], second.z], dim=1),
            [
                torch.cat([a[units], b], dim=1)
                for a, b in zip(first.noise, second.noise, strict=True)
            ],
            torch.cat([first.mse[units], second.mse], dim=1),
            torch.cat([first.images[units], second.images], dim=1),
        ),
        k,
    )
    out = Candidates(
        first.z.clone(), [n.clone() for n in first.noise], first.mse.clone(), first.images.clone()
    )
    out.z[units], out.mse[units], out.images[units] = both.z, both.mse, both.images
    for o, b in zip(out.noise, both.noise, strict=True):
        o[units] = b
    return out


def choose(cands: Candidates, n: int) -> torch.Tensor:
    """Indices ``(U, n)`` of the ``n`` best starts per unit, preferring distinct images."""
    order = cands.mse.argsort(dim=1)
    picks = []
    for u in range(order.shape[0]):
        chosen: list[int] = []
        for j in order[u].tolist():
            img = cands.images[u, j]
            if all((img - cands.images[u, c]).abs().mean() > 1e-3 for c in chosen):
                chosen.append(j)
            if len(chosen) == n:
                break
        for j in order[u].tolist():  # not enough distinct ones: repeat the best
            if len(chosen) == n:
                break
            chosen.append(j)
        picks.append(chosen)
    return torch.tensor(picks, device=cands.mse.device)


def blend(
    render: Renderer,
    degrade: Degradation,
    grid: TileGrid,
    targets: torch.Tensor,
    z: torch.Tensor,
    noise: list[torch.Tensor],
    tiles: torch.Tensor,
    cfg: SearchConfig,
    progress: dict,
    offsets: dict[int, torch.Tensor] | None = None,
) -> Generator[Progress, None, torch.Tensor]:
    """Phase 2: refine tiles ``(M, T, ...)`` on their blended mosaics; returns ``(M, C, H, W)``.

    ``targets`` are the low-res images ``(M, C, h, w)`` the mosaics must downscale to.
    ``offsets`` (feature-map offsets ``(M, T, ...)`` per layer, from the intermediate search)
    stay fixed while the latents move.
    """
    offsets = offsets or {}
    m, t = z.shape[:2]
    mosaic = Mosaic(grid, tiles)
    steps = cfg.n_blend_steps
    if t == 1 or steps == 0:
        return mosaic.image()
    f = grid.factor
    margin = math.ceil(degrade.margin / f)
    chunks = cfg.batches(t, m)  # tiles, a batch at a time, all mosaics together
    vec_dim = len(render.g.latent_shape)  # latent vectors start at this dim of (B, ...)
    layered = render.g.layered and render.g.geocross
    h, w = grid.size
    for c, idx in enumerate(chunks):
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
        target = targets[..., inner[0] : inner[1], inner[2] : inner[3]]
        fixed = mosaic.fixed(idx, box)
        zc = z[:, idx].flatten(0, 1).clone().requires_grad_()
        nc = [n[:, idx].flatten(0, 1).clone() for n in noise]
        oc = {k: o[:, idx].flatten(0, 1) for k, o in offsets.items()}
        params = [zc] + ([n.requires_grad_() for n in nc] if cfg.optimize_noise else [])
        opt = torch.optim.Adam(params, lr=cfg.blend_lr)
        best = torch.full((m,), math.inf, device=z.device)
        best_z, best_n = zc.detach().clone(), [n.detach().clone() for n in nc]
        start_done = progress["done"]
        for step in range(steps + 1):
            final = step == steps
            with torch.set_grad_enabled(not final):
                img = render(zc, nc or None, oc).view(m, len(idx), *tiles.shape[2:])
                region = mosaic.compose(fixed, idx, img, box)
                lr_img = degrade(region)[..., keep[0], keep[1]]
                mse = (lr_img - target).pow(2).flatten(1).mean(1)
                loss = cfg.l2_weight * mse.sum()
                if layered and cfg.geocross_weight:
                    loss = loss + cfg.geocross_weight * geocross(zc).sum()
            with torch.no_grad():
                better = (mse < best).repeat_interleave(len(idx))
                best = torch.minimum(best, mse.detach())
                best_z[better] = zc.detach()[better]
                for bn, n in zip(best_n, nc, strict=True):
                    bn[better] = n.detach()[better]
            if final:
                break
            for group in opt.param_groups:
                group["lr"] = cfg.blend_lr * (1 - 0.99 * step / steps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            project_to_sphere(zc, vec_dim)
            for n in nc:
                project_to_sphere(n, 1)
            progress["done"] = start_done + step + 1
            yield Progress(
                "blend", progress["done"], progress["total"], c + 1, len(chunks), float(best.max())
            )
        with torch.no_grad():
            final_tiles = render(best_z, best_n or None, oc).view(m, len(idx), *tiles.shape[2:])
        mosaic.update(idx, final_tiles)
        z[:, idx] = best_z.view(m, len(idx), *z.shape[2:])
        for n, bn in zip(noise, best_n, strict=True):
            n[:, idx] = bn.view(m, len(idx), *n.shape[2:])
    return mosaic.image()


def planned_steps(n_units: int, n_tiles: int, n_mosaics: int, cfg: SearchConfig) -> int:
    """Optimiser steps the whole job will take at most (for progress bars)."""
    total = sum(
        len(cfg.batches(n_units, per_unit)) * steps for per_unit, steps, _, _ in cfg.stages()
    )
    if n_tiles > 1:
        total += len(cfg.batches(n_tiles, n_mosaics)) * cfg.n_blend_steps
    return total
