"""What the stages of a search pipeline share: the :class:`Job` (read only), the
:class:`State` each stage hands to the next, and the :class:`Stage` interface.

A stage declares the optimiser steps it plans (its share of the progress total) and runs as
a generator that yields :class:`~napari_pulse.events.Progress` counted within its own plan
(``done`` from 0 to ``plan(job)``; ``total`` is its plan) and returns the new state. The
runner (:mod:`napari_pulse.pipeline`) re-bases those events on the job's one ledger.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

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


@dataclass
class Job:
    """One upscale's fixed inputs: tiles, targets, renderer, degradation, seed, device.

    ``lr_tiles`` are the low-res tiles of every plane, ``(U, C, h, w)`` with ``U = planes x
    tiles`` units; ``blind`` holds every unit's blind random starts ``(U, restarts, ...)``,
    drawn from ``rng`` (seeded with ``seed``) when the job is made; ``live`` ``(U, C, H, W)``
    holds every unit's best image so far, for the preview.
    """

    render: Renderer
    degrade: Degradation
    grid: TileGrid
    planes: torch.Tensor  # (P, C, h, w), the targets in [0, 1]
    lr_tiles: torch.Tensor
    cfg: SearchConfig
    seed: int
    rng: torch.Generator
    blind: tuple[torch.Tensor, list[torch.Tensor]]
    live: torch.Tensor

    @classmethod
    def make(
        cls,
        render: Renderer,
        degrade: Degradation,
        grid: TileGrid,
        planes: torch.Tensor,
        cfg: SearchConfig,
        seed: int,
    ) -> Job:
        """Cut ``planes`` into tiles and draw every tile's blind starts from ``seed``."""
        gen, dev = render.g, planes.device
        lr_tiles = grid.cut(planes).flatten(0, 1)  # (P * T, C, th, tw)
        n, k = lr_tiles.shape[0], cfg.restarts
        rng = torch.Generator().manual_seed(int(seed))
        z0 = gen.sample_latents(n * k, rng).view(n, k, *gen.latent_shape)
        noise0 = [torch.randn((n, k, *s), generator=rng) for s in gen.noise_shapes()]
        live = torch.nn.functional.interpolate(lr_tiles, scale_factor=grid.factor, mode="bilinear")
        live = live[..., : render.crop[0], : render.crop[1]]
        blind = (z0.to(dev), [x.to(dev) for x in noise0])
        return cls(render, degrade, grid, planes, lr_tiles, cfg, int(seed), rng, blind, live)

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
