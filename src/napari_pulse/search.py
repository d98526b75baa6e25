"""The latent search: PULSE on the sphere, batched starts, successive halving, per tile.

:class:`LatentSearch` is the pipeline stage that fits every tile still above eps on its
own: the tile's starts (from the :mod:`~napari_pulse.starts` strategy it is given) explore
together in batches for a few steps at a high learning rate, then the ``keep`` best refine
for the rest of ``steps`` at a lower one (:meth:`SearchConfig.rungs`). Each start is judged
on its own; the best latents and images of every start are kept across steps (not the last
step's), by the one optimiser loop of :mod:`napari_pulse.optim`.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING

import torch

from .candidates import Candidates, concat, kept
from .events import Progress, relay, ticks_as_progress
from .optim import Best, Patience, cosine, geocross, optimise, project_to_sphere

if TYPE_CHECKING:
    from .job import Job, State
    from .starts import Starts


#: The ``steps`` the seam refinement's budget is a share of, at most: it runs on every tile,
#: so its budget was measured where it pays (at 400 steps: 60 steps on a field, 100 on one
#: tile) and does not grow with a longer search of the tiles an encoder leaves above eps.
BLEND_BASE = 400


@dataclass(frozen=True)
class SearchConfig:
    """Settings of the search: the latent search's budget and rungs, the seam refinement,
    and the start strategies (see :mod:`napari_pulse.pipeline` for how they combine)."""

    #: Optimiser steps of a kept start: exploring, then refining. Measured at 400 and 800
    #: (``bench/self_consistency.py``, face DCGAN x4: 15/20 and 19/20 inputs at 35 dB or
    #: more, median 36.8 and 43.3 dB, 11.1 and 15.5 s per input; ``bench/real_faces.py``,
    #: 20 faces at x8: 14/20 and 17/20 at eps). Tiles an encoder brings to eps never run
    #: these steps, and the seam refinement's budget stops growing at 400
    #: (:meth:`blend_steps_for`), so the nuclei field of ``bench/field.py`` is unchanged.
    steps: int = 800
    restarts: int = 96  # random starts per tile, explored together in batches
    samples: int = 1
    eps: float = 2e-3
    explore_steps: int = 25
    explore_lr: float = 0.2
    keep: int = 4  # starts per tile refined after exploring (at least ``samples``)
    refine_lr: float = 0.1
    l2_weight: float = 100.0
    geocross_weight: float = 0.05  # only for generators whose latent calls for it
    blend_steps: int | None = None  # seam refinement steps; None: blend_steps_for; 0: off
    blend_lr: float | None = None  # seam refinement learning rate; None: blend_lr_for
    #: Tile positions the seam refinement refines at once, in turn, with the others held
    #: fixed (each group fits to its refined neighbours), and never more than fill a batch
    #: of ``batch_size`` images with every mosaic's tile; None: as many as fill one. 16 at
    #: 75 steps against a whole batch (64) at 100 on a 128x128 nuclei field at x4: 1.16x
    #: faster and 38.08/0.944 against 37.80/0.933 PSNR/SSIM (``bench/blend_groups.py``).
    blend_tiles: int | None = 16
    patience: int = 25
    early_stop: bool = True
    optimize_noise: bool = True
    #: Generator images per forward pass; None: :func:`batch_width` for the device.
    batch_size: int | None = None
    #: Arithmetic of the search's passes: "auto" (bfloat16 where the device computes it
    #: natively, :func:`~napari_pulse.render.native_bfloat16`; float32 elsewhere),
    #: "float32" or "bfloat16". The images of the result are always rendered in float32.
    precision: str = "auto"
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
    #: Encoder starts (where a trained encoder for the generator, factor and operator
    #: exists, see :mod:`napari_pulse.encoder`): every tile first refines the encoder's
    #: guess (and perturbations of it: ``encoder_starts``, at least ``samples``) for at
    #: most ``encoder_steps`` steps, leaving as soon as it is at eps and has not improved
    #: by 1% for ``encoder_patience`` steps; only tiles still above eps then get the
    #: search set by the fields above. None: the budget measured for the encoder and kept
    #: in its card (steps at most ``steps``), else 2 starts, 60 steps, patience 8
    #: (:meth:`~napari_pulse.refine.RefineConfig.encoder_rung`). The face DCGAN's encoders
    #: keep 800 steps and patience 100: their fits go on improving slowly past eps
    #: (``bench/self_consistency.py`` x4: 20/20 inputs at 35 dB or more, 2.5 s per input,
    #: against 10/20 with patience 8 and 19/20 from blind starts in 15.5 s).
    encoder: bool = True
    encoder_starts: int | None = None
    encoder_steps: int | None = None
    encoder_patience: int | None = None
    encoder_lr: float = 0.1
    #: The encoder's perturbed starts have cosines with its guess from 1 down to
    #: ``1 - encoder_spread`` (several samples are then distinct fits).
    encoder_spread: float = 0.3
    #: The retry rung (0 starts: none): the tiles the encoder rung leaves above eps get
    #: ``retry_starts`` starts near the guess (cosines down to ``1 - retry_spread``), for
    #: at most ``retry_steps`` steps, before any blind start. Measured on 8 held-out
    #: 64x64 nuclei fields at x4: it settled all 3 tiles that went on to the blind search
    #: (77.2 s against 90.9 s in all, PSNR/SSIM 30.93/0.796 against 30.90/0.797); on a
    #: foreign image (scikit-image's camera) all 10 such tiles, 34.5 s against 91.7 s.
    retry_starts: int = 8
    retry_steps: int = 120
    retry_spread: float = 0.6

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
            quick=False,
            guide=False,
        )

    @property
    def n_keep(self) -> int:
        return min(self.restarts, max(self.samples, self.keep))

    @property
    def n_explore_steps(self) -> int:
        return min(self.steps, self.explore_steps)

    def rungs(self) -> list[tuple[int, int, float, int]]:
        """Successive-halving rungs: (starts in, steps, learning rate, starts kept)."""
        explore = self.n_explore_steps
        rungs = [(self.restarts, explore, self.explore_lr, self.n_keep)]
        if self.steps > explore:
            rungs.append((self.n_keep, self.steps - explore, self.refine_lr, self.n_keep))
        return rungs

    def blend_steps_for(self, tiles: int) -> int:
        """Seam refinement steps for an image of ``tiles`` tiles: ``blend_steps``, else a
        quarter of ``steps`` for one tile (the last part of its fit) and 3/20 of them (at
        least 1) for several, refined in groups of ``blend_tiles``, with ``steps`` counted
        up to :data:`BLEND_BASE`: measured, one tile loses 0.2-0.4 dB at 3/16, and several
        gain at the same cost (``bench/blend_groups.py``, ``bench/heldout_x4.py``)."""
        if self.blend_steps is not None:
            return self.blend_steps
        base = min(self.steps, BLEND_BASE)
        return base // 4 if tiles == 1 else max(1, base * 3 // 20)

    def blend_lr_for(self, tiles: int) -> float:
        """The seam refinement's learning rate for an image of ``tiles`` tiles: ``blend_lr``,
        else 0.1 for several tiles refined for at least 40 steps, and 0.05 otherwise.
        Measured on a 128x128 nuclei field at x4, with the groups run side by side
        (``blend._rounds``): 60 steps at 0.1 fit as well as 75 at 0.05 (38.09/0.946 against
        38.08/0.944 PSNR/SSIM; 0.02-0.03 lost 0.9-1.0 dB, 0.15 lost 0.8), but at 22 steps
        (the fast preset) 0.1 lost 0.5 dB to 0.05. One tile: at 0.1 the single sample of
        ``bench/heldout_x4.py`` lost 0.25 dB (29.36/0.778 against 29.61/0.798)."""
        if self.blend_lr is not None:
            return self.blend_lr
        return 0.1 if tiles > 1 and self.blend_steps_for(tiles) >= 40 else 0.05

    def batches(self, n_units: int, rows_per_unit: int) -> list[list[int]]:
        """Units grouped so that a group has at most ``batch_size`` rows (at least one unit)."""
        per = max(1, self.batch_size // rows_per_unit)
        return [list(range(s, min(n_units, s + per))) for s in range(0, n_units, per)]

    def chunk_units(self) -> int:
        """Units searched at once: whole batches of every rung, and about
        :data:`CHUNK_STARTS` starts (at least one batch of each rung)."""
        whole = math.lcm(
            *(max(1, self.batch_size // min(k, self.restarts)) for k, *_ in self.rungs())
        )
        return whole * max(1, CHUNK_STARTS // (self.restarts * whole))

    def planned_steps(self, n_units: int) -> int:
        """Optimiser steps a latent search of ``n_units`` tiles takes at most."""
        return sum(len(self.batches(n_units, k)) * steps for k, steps, _, _ in self.rungs())


#: Starts held in memory at once by a search stage (with their noise: about 200 MB for the
#: nuclei generator), whatever the image size; see :meth:`SearchConfig.chunk_units`.
#: A chunk is whole batches of every rung, so at wide (GPU) batches it can hold more:
#: 61,440 starts at a width of 512 with 96 restarts and 4 kept.
CHUNK_STARTS = 4096

#: Batch widths by device type. On this project's 2-core CPU a forward and backward pass of
#: the nuclei StyleGAN2 runs 394-446 images/s at 32-64 images and 135-185 at 128; the face
#: DCGAN 598-635 at 32-64 and 524 at 128 (``bench/generator_speed.py --batch``): beyond 64
#: the activations leave the caches. GPUs want wide batches (512: not measured here).
BATCH_WIDTH = {"cpu": 64, "cuda": 512, "mps": 256}


def batch_width(device: torch.device | str) -> int:
    """Generator images per forward pass for a device (:data:`BATCH_WIDTH`)."""
    return BATCH_WIDTH.get(torch.device(device).type, 64)


def per_sample_loss(
    cfg: SearchConfig, mse: torch.Tensor, z: torch.Tensor, geo: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The search's loss per row (``l2_weight`` x the low-res MSE ``mse``, plus GEOCROSS
    when ``geo``) and the MSE."""
    loss = cfg.l2_weight * mse
    if geo and cfg.geocross_weight:
        loss = loss + cfg.geocross_weight * geocross(z)
    return loss, mse


class LatentSearch:
    """Stage: fit every unit still above eps (every unit when none has been searched) from
    the ``starts`` strategy, by successive halving; keeps the better of old and new."""

    def __init__(self, cfg: SearchConfig, starts: Starts, name: str = "search") -> None:
        self.cfg, self.starts, self.name = cfg, starts, name

    def plan(self, job: Job, units: int | None = None) -> int:
        """Steps for ``units`` tiles (all of the job's when None)."""
        return self.cfg.planned_steps(job.n_units if units is None else units)

    def plan_at(self, job: Job, state: State) -> int:
        """Steps for the tiles ``state`` leaves above eps (those this stage searches)."""
        return self.plan(job, len(state.above(self.cfg.eps, job)))

    def run(self, job: Job, state: State) -> Generator[Progress, None, State]:
        units, found, passes = state.above(self.cfg.eps, job), None, None
        if len(units):
            yield Progress(self.name, 0, self.plan(job, len(units)), 1, 1, float("inf"))
            found, passes = yield from self._chunks(job, state, units)
        return state.searched(self.name, self.cfg.eps, units, found, passes)

    def _chunks(
        self, job: Job, state: State, units: torch.Tensor
    ) -> Generator[Progress, None, tuple[Candidates, torch.Tensor]]:
        """The search of ``units``, a chunk of :meth:`SearchConfig.chunk_units` at a time:
        only one chunk's starts are in memory at once. Chunks are whole batches of every
        rung, so the result does not depend on the chunk size."""
        cfg, plan = self.cfg, self.plan(job, len(units))
        size = cfg.chunk_units()
        rungs = cfg.rungs()
        batches = sum(len(cfg.batches(len(units), min(k, cfg.restarts))) for k, *_ in rungs)
        ledger = [0, 0, plan, batches]  # steps done, batches done, steps and batches planned
        parts, spent = [], []
        for at in range(0, len(units), size):
            chunk = units[at : at + size]
            z0, noise0 = self.starts(job, state, chunk, cfg.restarts)
            found, passes = yield from self._halving(job, chunk, z0, noise0, ledger)
            parts.append(found.best(kept(cfg.samples, found.mse.shape[1])))
            spent.append(passes)
        return concat(parts), torch.cat(spent)

    def _halving(
        self,
        job: Job,
        units: torch.Tensor,
        z0: torch.Tensor,
        noise0: list[torch.Tensor],
        ledger: list[int],
    ) -> Generator[Progress, None, tuple[Candidates, torch.Tensor]]:
        """Every rung starts from the best states of the last, so it can only improve them.
        Returns the candidates and the generator passes spent on each unit; counts steps
        and batches on ``ledger``."""
        cfg, n, k = self.cfg, len(units), z0.shape[1]
        z0 = project_to_sphere(z0.clone(), job.render.vector_dim + 1)
        noise0 = [project_to_sphere(x.clone(), 2) for x in noise0]
        kept = Candidates(z0, noise0, torch.full((n, k), float("inf"), device=z0.device), None)
        passes = torch.zeros(n, dtype=torch.long)
        for per_unit, steps, lr, keep in cfg.rungs():
            per_unit = min(per_unit, k)
            parts = []
            for idx in cfg.batches(n, per_unit):
                sel = torch.tensor(idx, device=z0.device)
                fit = self._fit(job, units[sel], kept, sel, per_unit, steps, lr)
                ledger[1] += 1
                events = ticks_as_progress(self.name, ledger[0], ledger[2], *ledger[1::2])
                best = yield from relay(fit, events)
                ledger[0] += steps
                passes[sel.cpu()] += best.evaluations * per_unit
                found = Candidates(best.values[0], best.values[1:], best.mse, best.images)
                parts.append(found.unflat(len(idx), per_unit).best(keep))
            kept = concat(parts)
        return kept, passes

    def _fit(
        self,
        job: Job,
        units: torch.Tensor,
        kept: Candidates,
        sel: torch.Tensor,
        per_unit: int,
        steps: int,
        lr: float,
    ):
        """The optimiser loop on the starts ``kept[sel]`` of the job's ``units``."""
        cfg, render = self.cfg, job.render
        row_units = units.repeat_interleave(per_unit)
        target = job.lr_tiles[row_units]
        z = kept.z[sel].flatten(0, 1).clone().requires_grad_()
        noise = [n[sel].flatten(0, 1).clone() for n in kept.noise]
        params = [z] + ([n.requires_grad_() for n in noise] if cfg.optimize_noise else [])
        geo = render.uses_geocross

        def objective():
            img = render(z, noise or None)
            loss, mse = per_sample_loss(cfg, job.lr_mse(img, target, row_units), z, geo)
            return loss, mse, img

        def project() -> None:
            project_to_sphere(z, render.vector_dim)
            for x in noise:
                project_to_sphere(x, 1)

        rows = z.shape[0]
        images = torch.zeros((rows, render.channels, *render.crop), device=z.device)
        return optimise(
            params,
            objective,
            steps,
            lambda s: lr * cosine(s, steps),
            project,
            track=[z, *noise],
            images=images,
            settle=Patience(rows, per_unit, cfg.eps, cfg.patience, cfg.early_stop),
            on_step=partial(_publish, job.live, units, per_unit),
        )


def _publish(live: torch.Tensor, units: torch.Tensor, per_unit: int, best: Best) -> None:
    """Copy each unit's best image so far into ``live``."""
    mse = best.mse.view(len(units), per_unit)
    images = best.images.view(len(units), per_unit, *best.images.shape[1:])
    live[units] = images[torch.arange(len(units), device=mse.device), mse.argmin(dim=1)]
