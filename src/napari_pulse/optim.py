"""The one optimiser loop of every search: Adam, a projection after each step, best-so-far
tracking per unit, and per-unit settling.

The latent search, the seam refinement and the feature-map search all call :func:`optimise`;
they differ only in what they optimise (an :data:`Objective`), how they project (on the
sphere, into a ball), what a unit is (one start, a mosaic of tiles) and when a unit has
settled (a :class:`Settle` rule).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

#: ``objective()`` -> (loss to minimise, summed; MSE per unit ``(units,)``; image per row).
#: Called with gradients on for a step, off for the last look after the last step.
Objective = Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


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


class Tick(NamedTuple):
    """What :func:`optimise` yields after every step."""

    steps: int  # steps done
    worst: float  # the worst unit's best MSE so far (for the worst settling group)


@dataclass
class Best:
    """Each unit's lowest MSE so far, and the tracked tensors' rows where it was reached."""

    mse: torch.Tensor  # (units,)
    values: list[torch.Tensor]  # snapshots of the tracked tensors, (rows, ...)
    images: torch.Tensor | None  # (rows, ...) when images are kept
    evaluations: int = 0  # objective evaluations (generator passes per row) made


class Settle:
    """A settling rule: never settles; reports the worst unit's best MSE."""

    def observe(self, step: int, mse: torch.Tensor) -> None:
        """See every unit's best MSE after the evaluation of ``step``."""
        self.mse = mse

    def worst(self) -> float:
        return float(self.mse.max())

    def hold(self) -> torch.Tensor | None:
        """Units to hold at their best state after a step (None: none)."""
        return None

    def done(self, step: int) -> bool:
        """Whether the loop may stop after ``step``."""
        return False


class Patience(Settle):
    """Units come in groups (a tile's starts); a group has settled when its best is at or
    below ``eps`` and it has not improved by 1% for ``patience`` steps, or is far below eps
    (100x, +20 dB). The loop stops when every group has settled (if ``enabled``)."""

    def __init__(self, units: int, group: int, eps: float, patience: int, enabled: bool) -> None:
        self.group, self.eps, self.patience, self.enabled = group, eps, patience, enabled
        n = units // group
        self.best = torch.full((n,), math.inf)
        self.last_gain = torch.zeros(n, dtype=torch.long)

    def observe(self, step: int, mse: torch.Tensor) -> None:
        self.step = step
        if self.best.device != mse.device:
            self.best, self.last_gain = self.best.to(mse.device), self.last_gain.to(mse.device)
        ub = mse.view(-1, self.group).min(dim=1).values
        gained = ub < self.best * 0.99
        self.last_gain = torch.where(gained, torch.full_like(self.last_gain, step), self.last_gain)
        self.best = torch.minimum(self.best, ub)

    def worst(self) -> float:
        return float(self.best.max())

    def done(self, step: int) -> bool:
        settled = (self.best <= self.eps) & (
            (step - self.last_gain >= self.patience) | (self.best <= self.eps * 0.01)
        )
        return self.enabled and bool(settled.all())


class Below(Settle):
    """A unit settles once its best MSE is at most ``level``; from then on it is held at
    its best state. The loop stops when every unit has settled."""

    def __init__(self, level: float) -> None:
        self.level = level

    def hold(self) -> torch.Tensor:
        return self.mse <= self.level

    def done(self, step: int) -> bool:
        return bool(self.hold().all())


def optimise(
    params: list[torch.Tensor],
    objective: Objective,
    steps: int,
    lr: Callable[[int], float],
    project: Callable[[], None],
    track: list[torch.Tensor],
    rows: int = 1,
    images: torch.Tensor | None = None,
    settle: Settle | None = None,
    on_step: Callable[[Best], None] | None = None,
) -> Generator[Tick, None, Best]:
    """Adam on ``params`` for up to ``steps`` steps at learning rate ``lr(step)``.

    After each step ``project()`` puts the parameters back on their set (sphere, ball).
    Every evaluation updates each unit's best (a unit is ``rows`` consecutive rows of the
    tracked tensors ``track``, and of ``images`` when given, which receives the rows' images
    at their best); after the last step one more evaluation, without a step, sees the last
    update. ``settle`` decides which units are held at their best and when to stop.
    Yields a :class:`Tick` after every step; returns the :class:`Best` state.
    """
    settle = settle or Settle()
    opt = torch.optim.Adam(params, lr=lr(0))
    best: Best | None = None
    for step in range(steps + 1):
        final = step == steps  # one more look at the last update, without a step
        with torch.set_grad_enabled(not final):
            loss, mse, img = objective()
        with torch.no_grad():
            if best is None:
                inf = torch.full(mse.shape, math.inf, device=mse.device)
                best = Best(inf, [t.detach().clone() for t in track], images)
            best.evaluations += 1
            better_units = mse < best.mse
            best.mse = torch.where(better_units, mse.detach(), best.mse)
            better = better_units.repeat_interleave(rows) if rows > 1 else better_units
            for kept, t in zip(best.values, track, strict=True):
                kept[better] = t.detach()[better]
            if best.images is not None:
                best.images[better] = img.detach()[better]
            settle.observe(step, best.mse)
        if final:
            break
        for group in opt.param_groups:
            group["lr"] = lr(step)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        project()
        held = settle.hold()
        if held is not None:
            with torch.no_grad():
                rows_held = held.repeat_interleave(rows) if rows > 1 else held
                for kept, t in zip(best.values, track, strict=True):
                    t[rows_held] = kept[rows_held]
        if on_step is not None:
            on_step(best)
        yield Tick(step + 1, settle.worst())
        if settle.done(step):
            break
    assert best is not None
    return best
