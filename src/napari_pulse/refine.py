"""A refining search in which every tile leaves as soon as it has settled (a pool).

:class:`RefineSearch` gives each tile still above eps ``starts`` starts from its strategy
(the encoder's guess and a few perturbations of it) and refines them for at most ``steps``
steps. The rows of the tiles being refined form one pool of at most ``batch_size`` rows:
after every step a tile that has settled (at eps and no longer improving, or far below
eps) or used its steps leaves the pool with its best state, and the next tile takes its
rows, so that every generator pass runs at full width and an easy tile (flat background)
costs a handful of passes. Every row has its own Adam state and step count
(:class:`RowAdam`), with a learning rate falling as half a cosine over the tile's own
budget.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .candidates import Candidates, kept
from .events import Progress
from .optim import project_to_sphere
from .search import per_sample_loss

#: Units whose starts are drawn at once, as the pool takes them in (memory stays bounded).
CHUNK = 256

if TYPE_CHECKING:
    from .job import Job, State
    from .starts import Starts


#: The encoder rung's budget where neither the user nor the encoder's card sets one.
RUNG = {"starts": 2, "steps": 60, "patience": 8}


@dataclass(frozen=True)
class RefineConfig:
    """The budget of a refining rung."""

    starts: int = 2  # per tile (at least the samples asked for)
    steps: int = 60  # at most, per tile
    lr: float = 0.1
    patience: int = 8  # a tile at eps that has not improved by 1% for this long leaves
    far: float = 0.01  # a tile at or below far * eps leaves at once

    @classmethod
    def encoder_rung(cls, cfg, own: dict[str, int] | None = None) -> RefineConfig:
        """The encoder rung of a :class:`~napari_pulse.search.SearchConfig`: each of
        ``encoder_starts``, ``encoder_steps`` and ``encoder_patience`` as the user set it,
        else the encoder's own budget (``own``, from its card; steps at most ``cfg.steps``),
        else :data:`RUNG`."""
        b = _budget(cfg, own)
        return cls(b["starts"], b["steps"], cfg.encoder_lr, b["patience"])

    @classmethod
    def retry_rung(cls, cfg, own: dict[str, int] | None = None) -> RefineConfig:
        """The retry rung of a :class:`~napari_pulse.search.SearchConfig`: more starts
        near the encoder's guess, for longer, for the tiles the encoder rung left above eps
        (with the encoder rung's patience)."""
        patience = _budget(cfg, own)["patience"]
        return cls(cfg.retry_starts, cfg.retry_steps, cfg.encoder_lr, patience)


def _budget(cfg, own: dict[str, int] | None) -> dict[str, int]:
    """The encoder rung's starts, steps and patience (see :meth:`RefineConfig.encoder_rung`)."""
    own = dict(own or {})
    if "steps" in own:
        own["steps"] = min(own["steps"], cfg.steps)
    return {
        k: v if (v := getattr(cfg, f"encoder_{k}")) is not None else own.get(k, default)
        for k, default in RUNG.items()
    }


class RowAdam:
    """Adam whose rows (the first axis of every tensor) come and go: per-row moments,
    step counts and learning rates."""

    def __init__(self, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.b1, self.b2, self.eps = betas[0], betas[1], eps

    def step(
        self,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        moments: list[tuple[torch.Tensor, torch.Tensor]],
        t: torch.Tensor,
        lr: torch.Tensor,
    ) -> None:
        """One update of every row, in place; ``t`` (rows,) is each row's step number
        (from 1), ``lr`` (rows,) its learning rate."""
        c1 = 1 - self.b1 ** t.double()
        c2 = 1 - self.b2 ** t.double()
        for p, g, (m, v) in zip(params, grads, moments, strict=True):
            shape = (-1,) + (1,) * (p.dim() - 1)
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            step = (lr / c1).float().view(shape)
            denom = (v.sqrt() / c2.sqrt().float().view(shape)).add_(self.eps)
            p.sub_(step * m / denom)


class _Pool:
    """The rows in the pool: parameters, moments, per-row steps and best states."""

    def __init__(self, z: torch.Tensor, noise: list[torch.Tensor], device, crop, channels):
        self.params = [z[:0].clone(), *[n[:0].clone() for n in noise]]
        self.moments = [(p.clone(), p.clone()) for p in self.params]
        self.t = torch.zeros(0, dtype=torch.long, device=device)
        self.unit = torch.zeros(0, dtype=torch.long, device=device)  # job unit of each row
        self.slot = torch.zeros(0, dtype=torch.long, device=device)  # index among the tile's
        self.best_mse = torch.zeros(0, device=device)
        self.best = [p.clone() for p in self.params]
        self.images = torch.zeros((0, channels, *crop), device=device)

    def __len__(self) -> int:
        return len(self.t)

    def add(self, unit: int, z: torch.Tensor, noise: list[torch.Tensor]) -> None:
        k, dev = z.shape[0], self.t.device
        new = [z, *noise]
        self.params = [torch.cat([p, x]) for p, x in zip(self.params, new, strict=True)]
        self.moments = [
            (torch.cat([m, torch.zeros_like(x)]), torch.cat([v, torch.zeros_like(x)]))
            for (m, v), x in zip(self.moments, new, strict=True)
        ]
        self.best = [torch.cat([b, x]) for b, x in zip(self.best, new, strict=True)]
        self.t = torch.cat([self.t, torch.zeros(k, dtype=torch.long, device=dev)])
        self.unit = torch.cat([self.unit, torch.full((k,), unit, device=dev)])
        self.slot = torch.cat([self.slot, torch.arange(k, device=dev)])
        self.best_mse = torch.cat([self.best_mse, torch.full((k,), math.inf, device=dev)])
        blank = torch.zeros((k, *self.images.shape[1:]), device=dev)
        self.images = torch.cat([self.images, blank])

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (a boolean mask)."""
        self.params = [p[rows] for p in self.params]
        self.moments = [(m[rows], v[rows]) for m, v in self.moments]
        self.best = [b[rows] for b in self.best]
        for name in ("t", "unit", "slot", "best_mse", "images"):
            setattr(self, name, getattr(self, name)[rows])


class RefineSearch:
    """Stage: refine every tile still above eps (every tile, when none was searched) from
    its ``starts`` strategy in a pool that tiles leave as soon as they settle (see the
    module docstring); keeps the better of old and new candidates."""

    def __init__(self, cfg, rcfg: RefineConfig, starts: Starts, name: str = "refine") -> None:
        self.cfg, self.rcfg, self.starts, self.name = cfg, rcfg, starts, name

    @property
    def k(self) -> int:
        return min(max(self.rcfg.starts, self.cfg.samples), self.cfg.restarts)

    def width(self) -> int:
        """Tiles in the pool at once."""
        return max(1, self.cfg.batch_size // self.k)

    def plan(self, job: Job, units: int | None = None) -> int:
        """Steps for ``units`` tiles (all of the job's when None)."""
        n = job.n_units if units is None else units
        return math.ceil(n / self.width()) * self.rcfg.steps

    def plan_at(self, job: Job, state: State) -> int:
        """Steps for the tiles ``state`` leaves above eps (those this stage refines)."""
        return self.plan(job, len(state.above(self.cfg.eps, job)))

    def run(self, job: Job, state: State) -> Generator[Progress, None, State]:
        units, found, passes = state.above(self.cfg.eps, job), None, None
        if len(units):
            yield Progress(self.name, 0, self.plan(job, len(units)), 1, 1, math.inf)
            found, passes = yield from self._pool(job, state, units)
        return state.searched(self.name, self.cfg.eps, units, found, passes)

    def _starts(self, job: Job, state: State, units: torch.Tensor):
        """The starts of ``units``, on the search's spheres."""
        z0, noise0 = self.starts(job, state, units, self.k)
        z0 = project_to_sphere(z0.clone(), job.render.vector_dim + 1)
        return z0, [project_to_sphere(x.clone(), 2) for x in noise0]

    def _pool(self, job: Job, state: State, units: torch.Tensor):
        """Refine the starts of ``units`` in the pool; their best candidates, best first.
        Starts are drawn :data:`CHUNK` units at a time, as the pool takes them in."""
        cfg, render, k = self.cfg, job.render, self.k
        n, dev, g, m = len(units), job.device, render.g, kept(self.cfg.samples, self.k)
        out = Candidates(
            torch.zeros((n, m, *g.latent_shape), device=dev),
            [torch.zeros((n, m, *s), device=dev) for s in g.noise_shapes()],
            torch.full((n, m), math.inf, device=dev),
            torch.zeros((n, m, render.channels, *render.crop), device=dev),
        )
        z0, noise0 = self._starts(job, state, units[:CHUNK])
        pool = _Pool(z0[0], [x[0] for x in noise0], dev, render.crop, render.channels)
        queue, adam, geo = deque(range(n)), RowAdam(), render.uses_geocross
        tile_best = torch.full((n,), math.inf, device=dev)
        last_gain = torch.zeros(n, dtype=torch.long, device=dev)
        plan, done = self.plan(job, n), 0
        passes = torch.zeros(n, dtype=torch.long, device=dev)
        while queue or len(pool):
            while queue and len(pool) + k <= max(k, cfg.batch_size):
                j = queue.popleft()
                if j and j % CHUNK == 0:
                    z0, noise0 = self._starts(job, state, units[j : j + CHUNK])
                pool.add(j, z0[j % CHUNK], [x[j % CHUNK] for x in noise0])
            params = [p.detach().requires_grad_() for p in pool.params]
            z, noise = params[0], params[1:]
            img = render(z, noise or None)
            row_units = units[pool.unit]
            mse = job.lr_mse(img, job.lr_tiles[row_units], row_units)
            loss, mse = per_sample_loss(cfg, mse, z, geo)
            free = params if cfg.optimize_noise else params[:1]
            grads = list(torch.autograd.grad(loss.sum(), free))
            grads += [torch.zeros_like(p) for p in params[len(free) :]]
            passes.index_add_(0, pool.unit, torch.ones_like(pool.unit))
            with torch.no_grad():
                leave = self._observe(pool, mse.detach(), img.detach(), tile_best, last_gain)
                self._step(pool, grads, adam, leave)
                for j in torch.unique(pool.unit[leave]).tolist():
                    rows = (pool.unit == j).nonzero().flatten()
                    rows = rows[pool.slot[rows].argsort()]  # in start order
                    rows = rows[pool.best_mse[rows].argsort(stable=True)[:m]]  # best first
                    out.z[j] = pool.best[0][rows]
                    for o, b in zip(out.noise, pool.best[1:], strict=True):
                        o[j] = b[rows]
                    out.mse[j] = pool.best_mse[rows]
                    out.images[j] = pool.images[rows]
                    job.live[units[j]] = pool.images[rows[0]]
                pool.keep(~leave)
            done = min(done + 1, plan)
            seen = tile_best[torch.isfinite(tile_best)]
            worst = float(seen.max()) if len(seen) else math.inf
            yield Progress(self.name, done, plan, 1, 1, worst)
        return out, passes

    def _observe(self, pool: _Pool, mse, img, tile_best, last_gain) -> torch.Tensor:
        """Update the rows' bests and the tiles' settling; rows whose tile leaves now."""
        r, eps = self.rcfg, self.cfg.eps
        better = mse < pool.best_mse
        pool.best_mse = torch.where(better, mse, pool.best_mse)
        for b, p in zip(pool.best, pool.params, strict=True):
            b[better] = p[better]
        pool.images[better] = img[better]
        units = torch.unique(pool.unit)
        ub = torch.full_like(tile_best, math.inf).scatter_reduce(
            0, pool.unit, pool.best_mse, "amin", include_self=True
        )[units]
        t = torch.zeros_like(tile_best, dtype=torch.long).scatter_reduce(
            0, pool.unit, pool.t, "amax", include_self=True
        )[units]
        gained = ub < tile_best[units] * 0.99
        last_gain[units] = torch.where(gained, t, last_gain[units])
        tile_best[units] = torch.minimum(tile_best[units], ub)
        at = tile_best[units] <= eps
        settled = at & ((t - last_gain[units] >= r.patience) | (tile_best[units] <= r.far * eps))
        gone = units[settled | (t >= r.steps)]
        return torch.isin(pool.unit, gone)

    def _step(self, pool: _Pool, grads, adam: RowAdam, leave: torch.Tensor) -> None:
        """One Adam step of the rows that stay, then back onto their spheres."""
        stay = ~leave
        if not bool(stay.any()):
            return
        r = self.rcfg
        pool.t[stay] += 1
        t = pool.t[stay]
        lr = r.lr * 0.5 * (1 + torch.cos(math.pi * (t - 1).double() / max(1, r.steps)))
        params = [p[stay] for p in pool.params]
        moments = [(m[stay], v[stay]) for m, v in pool.moments]
        adam.step(params, [g[stay] for g in grads], moments, t, lr)
        for i, p in enumerate(params):
            project_to_sphere(p, pool.params[0].dim() - 1 if i == 0 else 1)
            pool.params[i][stay] = p
            pool.moments[i][0][stay], pool.moments[i][1][stay] = moments[i]
