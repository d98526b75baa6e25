"""Guided starts: a learned guess of the latent behind each low-res tile.

A warm-start bank (:mod:`napari_pulse.bank`) pairs prior latents with their downscaled
images. A small network fitted on those pairs (:class:`Guide`) maps a low-res tile to the
direction of each of its latent vectors. A low-res tile leaves much of the latent open (on
the face DCGAN at x4 the guess has a cosine of about 0.5 with the truth), so the guess is
not used as the answer. It is where the starts come from: a tile's ``k`` starts spread
from near the guess to blind random directions (:func:`starts`), and the search does the
rest. This finds basins that blind starts and nearest-bank starts miss
(``bench/self_consistency.py --guide``).

A guide is a pure function of its bank and of the settings here, so it is cached beside
the bank (memory and disk) like the bank itself.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from . import bank
from .bank import BankKey, TensorCache
from .events import Progress, relay
from .optim import project_to_sphere

if TYPE_CHECKING:
    from .job import Job, State

#: Hidden width of the guide's two hidden layers.
HIDDEN = 512
#: Training: Adam steps, batch size and peak learning rate (cosine decay), and the steps
#: per progress event.
STEPS = 2000
BATCH = 256
LR = 1e-3
EVENT = 20
#: Bank size the guide is meant for: fewer pairs overfit (held-out cosine 0.31 with
#: 4096 pairs against 0.49 with 16384 on the face DCGAN at x4).
RECOMMENDED_BANK = 16384
#: Bank size for a quick first wave alone (its 8 nearest starts per tile need fewer draws).
QUICK_BANK = 4096
#: Seed of the bank a guide is fitted on, whatever the search's seed: the guide is fitted
#: once per generator and operator, and a search's seed still changes its starts.
BANK_SEED = 0
#: Part of the cache key: bump when the guide's architecture or training changes.
VERSION = 1


def bank_size(requested: int, quick: bool, guided: bool) -> int:
    """The bank to build: ``requested`` when given (> 0), else what guided starts or a quick
    wave need (:data:`RECOMMENDED_BANK`, :data:`QUICK_BANK`), else none (0)."""
    if requested:
        return requested
    if guided:
        return RECOMMENDED_BANK
    return QUICK_BANK if quick else 0


class Guide(nn.Module):
    """Low-res tiles ``(N, C, h, w)`` -> unit directions of their latent vectors."""

    def __init__(self, low_shape: tuple[int, ...], latent_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.low_shape = tuple(low_shape)
        self.latent_shape = tuple(latent_shape)
        n_in, n_out = math.prod(low_shape), math.prod(latent_shape)
        self.net = nn.Sequential(
            nn.Linear(n_in, HIDDEN),
            nn.SiLU(),
            nn.Linear(HIDDEN, HIDDEN),
            nn.SiLU(),
            nn.Linear(HIDDEN, n_out),
        )
        self.register_buffer("mean", torch.zeros(n_in))
        self.register_buffer("std", torch.ones(n_in))

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        x = (low.flatten(1) - self.mean) / self.std
        out = self.net(x).view(-1, *self.latent_shape)
        return nn.functional.normalize(out, dim=-1)


def fit(
    low: torch.Tensor, latents: torch.Tensor, seed: int, steps: int | None = None
) -> Generator[int, None, Guide]:
    """A :class:`Guide` fitted on bank pairs (images ``low``, ``latents``) for ``steps``
    (default :data:`STEPS`), deterministic for a seed; yields the steps done every
    :data:`EVENT` steps."""
    steps = STEPS if steps is None else steps
    low, latents = low.float(), latents.float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        guide = Guide(tuple(low.shape[1:]), tuple(latents.shape[1:])).to(low.device)
    flat = low.flatten(1)
    guide.mean.copy_(flat.mean(0))
    guide.std.copy_(flat.std(0).clamp_min(1e-3))
    rng = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(guide.parameters(), lr=LR)
    n = low.shape[0]
    order = torch.randperm(n, generator=rng)
    pos = 0
    for step in range(steps):
        if pos + BATCH > n:
            order, pos = torch.randperm(n, generator=rng), 0
        b = order[pos : pos + BATCH].to(low.device)
        pos += BATCH
        for group in opt.param_groups:
            group["lr"] = LR * 0.5 * (1 + math.cos(math.pi * step / steps))
        cos = nn.functional.cosine_similarity(guide(low[b]), latents[b], dim=-1)
        loss = (1 - cos).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % EVENT == 0:
            yield step + 1
    guide.eval().requires_grad_(False)
    return guide


#: Guides of this process and on disk, beside the banks they were fitted on.
CACHE = TensorCache("bank", suffix=f"-guide{VERSION}")


def cached(key: BankKey, low_shape: tuple[int, ...], latent_shape: tuple[int, ...]) -> Guide | None:
    """The guide fitted on the bank ``key``, when one was made before (else None)."""
    state = CACHE.get(key)
    if state is None:
        return None
    guide = Guide(low_shape, latent_shape)
    try:
        guide.load_state_dict(state)
    except (RuntimeError, KeyError):  # a file of another shape: fitted again
        return None
    return guide.eval().requires_grad_(False)


def store(key: BankKey, guide: Guide) -> None:
    """Keep ``guide`` for later calls with the same bank."""
    CACHE.put(key, {k: v.detach().cpu() for k, v in guide.state_dict().items()})


def events() -> int:
    """Progress events that :func:`fit` yields with its default steps."""
    return STEPS // EVENT


def build(low: torch.Tensor, latents: torch.Tensor, seed: int) -> Generator[Progress, None, Guide]:
    """:func:`fit` as "guide" progress events (``done`` of :func:`events` in all)."""
    n = events()

    def event(step: int) -> Progress:
        i = step // EVENT
        return Progress("guide", i, n, i, n, math.inf)

    return (yield from relay(fit(low, latents, seed), event))


class FitGuide:
    """Stage: the guide fitted on the bank of the ``bank`` stage, from the cache when it was
    fitted before (then it plans nothing)."""

    name = "guide"

    def __init__(self, bank_stage: bank.BuildBank) -> None:
        self.bank_stage = bank_stage

    def _cached(self, job: Job) -> Guide | None:
        low_shape = tuple(job.lr_tiles.shape[1:])
        return cached(self.bank_stage.key(job), low_shape, job.render.g.latent_shape)

    def plan(self, job: Job) -> int:
        return 0 if self._cached(job) is not None else events()

    def run(self, job: Job, state: State) -> Generator[Progress, None, State]:
        guesser = self._cached(job)
        if guesser is None:
            key = state.bank_key
            latents = bank.latents(job.render.g, key.size, key.seed).to(job.device)
            guesser = yield from build(state.bank.to(job.device), latents, key.seed)
            store(key, guesser)
        return replace(state, guide=guesser)


def spread(k: int) -> torch.Tensor:
    """Cosines ``(k,)`` of the starts with the guess, evenly from near 1 (the guess) to near
    0 (blind): ``1 - (i + 0.5) / k``. None is exactly the guess, so the seed changes every
    start."""
    return 1 - (torch.arange(k, dtype=torch.float32) + 0.5) / k


def starts(guide: Guide, targets: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Latents ``(U, k, ...)`` for targets ``(U, C, h, w)``, on the search's sphere: per
    latent vector, ``a * guess + sqrt(1 - a^2) * random`` for ``a`` in :func:`spread`, with
    the random directions from standard normal ``directions`` ``(U, k, *latent_shape)``."""
    with torch.no_grad():
        guess = guide(targets.to(guide.mean.device).float()).cpu()  # (U, *latent_shape)
    k = directions.shape[1]
    noise = nn.functional.normalize(directions, dim=-1)
    a = spread(k).view(1, k, *[1] * (guess.dim() - 1))
    z = a * guess[:, None] + (1 - a * a).sqrt() * noise
    return project_to_sphere(z, z.dim() - 1)
