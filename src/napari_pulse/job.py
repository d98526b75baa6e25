"""What the stages of a search pipeline share: the :class:`Job` (read only), the
:class:`State` each stage hands to the next, and the :class:`Stage` interface.

A stage declares the optimiser steps it plans (its share of the progress total) and runs as
a generator that yields :class:`~napari_pulse.events.Progress` counted within its own plan
(``done`` from 0 to ``plan(job)``; ``total`` is its plan) and returns the new state. The
runner (:mod:`napari_pulse.pipeline`) re-bases those events on the job's one ledger.
"""

from __future__ import annotations

import functools
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from .degrade import Degradation
from .events import Progress
from .render import Renderer
from .search import SearchConfig
from .tiling import TileGrid

if TYPE_CHECKING:
    from .bank import BankKey
    from .candidates import Candidates, Chosen
    from .guide import Guide


#: Random streams of a unit (see :func:`unit_generator`).
BLIND, GUIDED, ENCODER, RETRY = 0, 1, 2, 3
#: Seeds are integers from 0 to this (each seed gives its own results).
MAX_SEED = 2**63 - 1


def unit_generator(seed: int, unit: int, stream: int) -> torch.Generator:
    """A torch random generator for one unit's ``stream``, from the seed and the unit's
    index (numpy's ``SeedSequence`` mixes the three into the generator's 64-bit seed)."""
    state = np.random.SeedSequence([int(seed), int(stream), int(unit)]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@dataclass
class Job:
    """One upscale's fixed inputs: tiles, targets, renderer, degradation, seed, device.

    ``lr_tiles`` are the low-res tiles of every plane, ``(U, C, h, w)`` with ``U = planes x
    tiles`` units; ``live`` ``(U, C, H, W)`` holds every unit's best image so far, for the
    preview. Random starts are drawn when a stage needs them, for the units it works on
    (:meth:`draw`, :meth:`blind_starts`): each unit's from its own stream of the seed and
    the unit's index, so a tile's starts do not depend on how many tiles there are or on
    which of them are searched together, and memory does not grow with restarts x tiles.
    """

    render: Renderer
    degrade: Degradation
    grid: TileGrid
    planes: torch.Tensor  # (P, C, h, w), the targets in [0, 1]
    lr_tiles: torch.Tensor
    cfg: SearchConfig
    seed: int
    live: torch.Tensor
    #: The units' indices in the whole image, when this job is one block of it (see
    #: :mod:`napari_pulse.blocks`): random streams follow them, so a tile gets the same
    #: starts in every block it is in. None: the units are the whole image's.
    ids: torch.Tensor | None = None
    #: The user's pixels inside ``planes``, their low-res extent ``(y0, y1, x0, x1)``; the
    #: rest is the border of :func:`~napari_pulse.tiling.border` (reflected pixels that no
    #: loss reads). None:
    #: every pixel is the user's.
    real: tuple[int, int, int, int] | None = None

    @classmethod
    def make(
        cls,
        render: Renderer,
        degrade: Degradation,
        grid: TileGrid,
        planes: torch.Tensor,
        cfg: SearchConfig,
        seed: int,
        ids: torch.Tensor | None = None,
        live: bool = True,
        real: tuple[int, int, int, int] | None = None,
    ) -> Job:
        """Cut ``planes`` into tiles (the job's units); ``live`` previews them (without it
        the job is only a description of the whole image's tiles); ``real``: the user's
        pixels among them (see :attr:`real`)."""
        lr_tiles = grid.cut(planes).flatten(0, 1)  # (P * T, C, th, tw)
        if live:
            up = torch.nn.functional.interpolate(
                lr_tiles, scale_factor=grid.factor, mode="bilinear"
            )
            up = up[..., : render.crop[0], : render.crop[1]]
        else:
            up = torch.zeros((0, *lr_tiles.shape[1:]))
        return cls(render, degrade, grid, planes, lr_tiles, cfg, int(seed), up, ids, real)

    def draw(
        self,
        units: torch.Tensor,
        shapes: Sequence[tuple[int, ...]],
        stream: int,
        latents: int = 0,
    ) -> list[torch.Tensor]:
        """Standard normal draws of ``shapes`` for each of ``units`` (each ``(len(units),
        *shape)``, on the job's device), from each unit's own random ``stream``; first
        ``latents`` draws from the generator's prior, when asked for."""
        gen = self.render.g
        out: list[list[torch.Tensor]] = [[] for _ in range(len(shapes) + bool(latents))]
        for u in units.tolist():
            uid = int(u) if self.ids is None else int(self.ids[u])
            rng = unit_generator(self.seed, uid, stream)
            got = [gen.sample_latents(latents, rng)] if latents else []
            got += [torch.randn(shape, generator=rng) for shape in shapes]
            for into, x in zip(out, got, strict=True):
                into.append(x)
        if not len(units):
            empty = [(latents, *gen.latent_shape)] if latents else []
            return [torch.zeros((0, *s), device=self.device) for s in empty + list(shapes)]
        return [torch.stack(into).to(self.device) for into in out]

    def blind_starts(self, units: torch.Tensor, k: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``k`` blind random starts for each of ``units``: latents from the generator's
        prior and noise, ``(len(units), k, ...)``."""
        shapes = [(k, *s) for s in self.render.g.noise_shapes()]
        z, *noise = self.draw(units, shapes, BLIND, latents=k)
        return z, noise

    @property
    def real_box(self) -> tuple[int, int, int, int]:
        """The low-res extent ``(y0, y1, x0, x1)`` of the user's pixels in ``planes``."""
        return self.real or (0, self.planes.shape[-2], 0, self.planes.shape[-1])

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """High-res images ``(..., H, W)`` of the planes cut to the user's pixels."""
        y0, y1, x0, x1 = (v * self.grid.factor for v in self.real_box)
        return x[..., y0:y1, x0:x1]

    @functools.cached_property
    def _reads(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """How :meth:`lr_mse` reads each tile: the high-res rows and columns of the tile,
        padded for the operator, that each padded position takes, ``(T, H + 2m)`` and
        ``(T, W + 2m)`` (reflected at the tile's edge, and at the user's image border where
        the tile crosses it); and which of its low-res pixels are the user's."""
        ry0, ry1, rx0, rx1 = self.real_box
        (th, tw), f, m = self.grid.tile, self.grid.factor, self.degrade.pad

        def taken(a: int, b: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
            a, b = max(a, 0), min(b, size)  # the user's low-res pixels of the tile
            n = (b - a) * f  # reflected into them (as often as a wide operator needs)
            k = (torch.arange(-m, size * f + m) - a * f) % max(1, 2 * (n - 1))
            j = a * f + torch.where(k < n, k, 2 * (n - 1) - k)
            own = torch.zeros(size)
            own[a:b] = 1
            return j, own

        ys = [taken(ry0 - y, ry1 - y, th) for y, _ in self.grid.origins]
        xs = [taken(rx0 - x, rx1 - x, tw) for _, x in self.grid.origins]
        rows, cols = torch.stack([j for j, _ in ys]), torch.stack([j for j, _ in xs])
        pairs = zip(ys, xs, strict=True)
        own = torch.stack([wy[:, None] * wx[None, :] for (_, wy), (_, wx) in pairs])
        return rows.to(self.device), cols.to(self.device), own.to(self.device)

    def lr_mse(self, img: torch.Tensor, target: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
        """The low-res MSE of each row of tile images ``img`` ``(R, C, H, W)`` against
        ``target`` ``(R, C, h, w)``, the rows being tiles of ``units``: over the user's
        pixels only, with the operator reflecting at the user's image border (as it does on
        the output), so that the generator's own edge may lie outside the image."""
        if self.real is None:
            return (self.degrade(img) - target).pow(2).flatten(1).mean(1)
        rows, cols, own = self._reads
        tile = units.to(rows.device) % len(self.grid)
        (r, c, h, w), m = img.shape, self.degrade.pad
        x = torch.gather(img, 2, rows[tile][:, None, :, None].expand(r, c, h + 2 * m, w))
        x = torch.gather(x, 3, cols[tile][:, None, None, :].expand(r, c, h + 2 * m, w + 2 * m))
        weight = own[tile][:, None]
        err = (self.degrade.padded(x) - target).pow(2) * weight
        return err.flatten(1).sum(1) / (weight.flatten(1).sum(1) * c)

    @property
    def n_units(self) -> int:
        return self.lr_tiles.shape[0]

    @property
    def n_planes(self) -> int:
        return self.planes.shape[0]

    @property
    def samples(self) -> int:
        return self.cfg.samples

    @property
    def n_mosaics(self) -> int:
        return self.n_planes * self.samples

    @property
    def device(self) -> torch.device:
        return self.planes.device


@dataclass(frozen=True)
class State:
    """What the stages have made so far (each stage returns a new one)."""

    bank: torch.Tensor | None = None  # low-res bank images (n, C, h, w)
    bank_key: BankKey | None = None
    guide: Guide | None = None
    cands: Candidates | None = None  # every unit's best starts so far, best first
    #: Units at eps after each latent search stage, by stage name.
    at_eps: dict[str, int] = field(default_factory=dict)
    chosen: Chosen | None = None  # the samples of every unit
    mosaics: torch.Tensor | None = None  # (P * N, C, H, W), planes major
    #: Generator passes (images rendered while optimising) spent on every unit so far.
    passes: torch.Tensor | None = None

    def above(self, eps: float, job: Job) -> torch.Tensor:
        """The units a search stage works on: those still above ``eps`` (all of them when
        none has been searched yet)."""
        if self.cands is None:
            return torch.arange(job.n_units, device=job.device)
        return (self.cands.mse[:, 0] > eps).nonzero().flatten()

    def searched(
        self, name: str, eps: float, units: torch.Tensor, found, passes: torch.Tensor
    ) -> State:
        """This state after search stage ``name`` found candidates ``found`` for ``units``
        (the better of old and new are kept) with ``passes`` spent on each; it records the
        units at ``eps`` after it. ``found`` is None when the stage had no unit to search."""
        from .candidates import merge

        state, cands = self, self.cands
        if found is not None:
            cands = found if cands is None else merge(cands, found, units)
            state = self.spent(units, passes)
        at_eps = int((cands.mse[:, 0] <= eps).sum())
        return replace(state, cands=cands, at_eps={**self.at_eps, name: at_eps})

    def spent(self, units: torch.Tensor, passes: torch.Tensor | int) -> State:
        """This state with ``passes`` (one count, or one per unit) more generator passes
        spent on ``units``."""
        if self.passes is None:
            return self
        more = torch.as_tensor(passes).long().cpu().expand(len(units))
        return replace(self, passes=self.passes.index_add(0, units.cpu().long(), more))


class Stage(Protocol):
    """A piece of the work: what it plans, and how it turns one state into the next."""

    name: str

    def plan(self, job: Job) -> int:
        """Optimiser steps (progress units) this stage takes at most."""
        ...

    def run(self, job: Job, state: State) -> Generator[Progress, None, State]:
        """Do the work, yielding progress counted within :meth:`plan`; return the new state."""
        ...


def expected_plans(job: Job, stages: list[Stage]) -> list[int]:
    """Each stage's share of the progress total before any has run. A search stage that
    works only on the units an earlier search left above eps (one with ``plan_at``, after
    another) counts none: the stages before it usually settle every unit (the encoder rung
    does on the fields of ``bench/field.py``). :func:`plan_at` counts it exactly when it is
    reached, so the bar follows the work instead of leaping over a share that never runs."""
    out, searched = [], False
    for stage in stages:
        later = searched and hasattr(stage, "plan_at")
        out.append(stage.plan(job, 0) if later else stage.plan(job))  # type: ignore[call-arg]
        searched = searched or hasattr(stage, "plan_at")
    return out


def plan_at(stage: Stage, job: Job, state: State) -> int:
    """A stage's share of the progress total once the stages before it have run: a search
    stage counts the units still above eps."""
    at = getattr(stage, "plan_at", None)
    return stage.plan(job) if at is None else at(job, state)
