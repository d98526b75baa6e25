"""Start strategies: where a latent search stage's starts come from.

A strategy is called with the job, the pipeline's state, the units to start and the number
of starts per unit ``k``, and returns latents ``(len(units), k, *latent_shape)`` and noise
``(len(units), k, ...)`` per noise input. A search stage is given one; which one is decided
where the pipeline is built (:func:`napari_pulse.pipeline.build`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch

from . import bank, guide

if TYPE_CHECKING:
    from .job import Job, State

Latents = tuple[torch.Tensor, list[torch.Tensor]]


class Starts(Protocol):
    def __call__(self, job: Job, state: State, units: torch.Tensor, k: int) -> Latents: ...


class BlindStarts:
    """Blind random draws from the prior: the job's own, drawn from its seed."""

    def __call__(self, job: Job, state: State, units: torch.Tensor, k: int) -> Latents:
        z0, noise0 = job.blind
        if z0.shape[1] != k:
            raise ValueError(f"the job drew {z0.shape[1]} blind starts per tile, not {k}")
        return z0[units], [n[units] for n in noise0]


class NearestStarts:
    """Each unit's ``k`` nearest (low-res MSE) entries of the warm-start bank."""

    def __call__(self, job: Job, state: State, units: torch.Tensor, k: int) -> Latents:
        key = state.bank_key
        targets = job.lr_tiles[units]
        return bank.starts(job.render.g, state.bank, targets, k, key.seed, job.device)


class GuidedStarts:
    """Latents spread from the guide's guess to blind directions (:func:`guide.starts`);
    the noise is the job's blind draw. Drawn once for every unit of the job, from its
    random stream after the blind starts, so any subset of units gets the same starts."""

    def __init__(self) -> None:
        self._z: torch.Tensor | None = None

    def __call__(self, job: Job, state: State, units: torch.Tensor, k: int) -> Latents:
        if self._z is None:
            self._z = guide.starts(state.guide, job.lr_tiles, k, job.rng).to(job.device)
        return self._z[units], [n[units] for n in job.blind[1]]
