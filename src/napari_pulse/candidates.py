"""Candidates: the best state of every start of every tile, and how samples are chosen."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch

from .events import Progress

if TYPE_CHECKING:
    from .job import Job, State


@dataclass
class Candidates:
    """The best state of every start of every unit: ``(U, K, ...)`` tensors."""

    z: torch.Tensor
    noise: list[torch.Tensor]
    mse: torch.Tensor
    images: torch.Tensor | None  # None for starts that have not run yet

    def unflat(self, n_units: int, per_unit: int) -> Candidates:
        """Flat rows back to ``(n_units, per_unit, ...)`` candidates."""

        def unflat(t: torch.Tensor) -> torch.Tensor:
            return t.view(n_units, per_unit, *t.shape[1:])

        return Candidates(
            unflat(self.z), [unflat(n) for n in self.noise], unflat(self.mse), unflat(self.images)
        )

    def best(self, n: int) -> Candidates:
        """The ``n`` lowest-MSE candidates of every unit, best first."""
        order = self.mse.argsort(dim=1)[:, :n]
        units = torch.arange(order.shape[0], device=order.device)[:, None]
        return Candidates(
            self.z[units, order],
            [x[units, order] for x in self.noise],
            self.mse[units, order],
            self.images[units, order],
        )


def kept(samples: int, k: int) -> int:
    """Candidates per unit that a search stage hands on, of its ``k``: for one sample only
    the best (all that :class:`ChooseSamples` takes, so results are the same), for several
    all ``k`` (it prefers distinct images among them). Memory then grows with the tiles
    by one candidate each, not by ``k``."""
    return 1 if samples == 1 else k


def concat(parts: list[Candidates]) -> Candidates:
    """Candidates of consecutive groups of units, as one."""
    return Candidates(
        torch.cat([p.z for p in parts]),
        [torch.cat(ns) for ns in zip(*[p.noise for p in parts], strict=True)],
        torch.cat([p.mse for p in parts]),
        torch.cat([p.images for p in parts]),
    )


def merge(first: Candidates, second: Candidates, units: torch.Tensor) -> Candidates:
    """``first`` with the candidates of ``units`` replaced by the best of both searches
    (``second`` holds one row per entry of ``units``); as many per unit as ``first``."""
    k = first.mse.shape[1]
    both = Candidates(
        torch.cat([first.z[units], second.z], dim=1),
        [torch.cat([a[units], b], dim=1) for a, b in zip(first.noise, second.noise, strict=True)],
        torch.cat([first.mse[units], second.mse], dim=1),
        torch.cat([first.images[units], second.images], dim=1),
    ).best(k)
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


@dataclass
class Chosen:
    """The samples of every unit, ``(U, N, ...)``: latents, noise, images, and (after the
    feature search) feature offsets per layer and the out-of-domain score."""

    z: torch.Tensor
    noise: list[torch.Tensor]
    images: torch.Tensor
    latent_mse: torch.Tensor  # (U,): the latent search's fit of each unit's best sample
    offsets: dict[int, torch.Tensor] = field(default_factory=dict)
    ood: torch.Tensor | None = None  # (U, N), 0 to 1


class ChooseSamples:
    """Stage: each unit's ``samples`` best candidates, distinct images preferred."""

    name = "choose"

    def plan(self, job: Job) -> int:
        return 0

    def run(self, job: Job, state: State) -> Generator[Progress, None, State]:
        yield from ()
        cands = state.cands
        pick = choose(cands, job.samples)  # (U, N)
        units = torch.arange(job.n_units, device=pick.device)[:, None]
        chosen = Chosen(
            z=cands.z[units, pick],
            noise=[n[units, pick] for n in cands.noise],
            images=cands.images[units, pick],
            latent_mse=cands.mse[units, pick][:, 0],
            ood=torch.zeros((job.n_units, job.samples), device=cands.z.device),
        )
        return replace(state, chosen=chosen, cands=None)  # nothing later reads them: freed
