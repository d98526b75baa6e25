"""The search as a pipeline of stages, built from the options in one place and run by one runner.

A pipeline is a list of stages (:class:`~napari_pulse.job.Stage`), each a small object that
plans its share of the progress total and turns one :class:`~napari_pulse.job.State` into
the next. :func:`build` is the only place where the search's strategy settings (warm-start
bank, guided starts, quick wave, intermediate mode) are read; every other piece of code is
given objects. Where a trained encoder exists for the generator, tile, factor and
operator (:mod:`napari_pulse.encoder`), the default pipeline is a ladder::

    RefineSearch("encoder", encoder starts) -> RefineSearch("retry", wider encoder starts)
        -> LatentSearch(blind starts) -> ChooseSamples -> SeamBlend (single tiles too)

where every tile refines the encoder's guess for a few steps and leaves as soon as it
settles, the tiles still above eps retry from more starts near the guess for longer, and
only tiles still above eps after that climb to the full search. Without an encoder::

    LatentSearch(blind starts) -> ChooseSamples -> SeamBlend

and the strategies add or swap pieces::

    bank      BuildBank first; the search starts from each tile's nearest bank entries
    guide     BuildBank, FitGuide; the search starts spread from the guide's guess
    quick     BuildBank; LatentSearch("quick", nearest starts, small budget) first, so
              the full search only sees the tiles it left above eps
    features  FeatureSearch after ChooseSamples (``mode="intermediate"``)

:func:`run` sums the stages' plans into one total, moves one ledger from stage to stage
(a stage that stops early leaves the rest of its share unused), re-bases every event on it
and attaches the live preview. :func:`stream` is a whole upscale around them: the user's
array as planes and tiles, the :class:`~napari_pulse.job.Job`, the stages, the result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import torch

from . import blocks, domain, encoder, guide
from .bank import BuildBank
from .blend import SeamBlend
from .candidates import ChooseSamples
from .estimate import estimate
from .events import Finished, Progress, relay
from .guide import FitGuide
from .intensity import fit_intensity
from .intermediate import FeatureSearch
from .job import RETRY, Job, Stage, State, expected_plans, plan_at
from .layout import Layout
from .options import Setup
from .refine import RefineConfig, RefineSearch
from .render import Renderer, pass_dtype
from .result import Frame, Result, assemble, score
from .search import LatentSearch
from .starts import BlindStarts, EncoderStarts, GuidedStarts, NearestStarts
from .tiling import Mosaic, TileGrid, border

log = logging.getLogger("napari_pulse")


def build(setup: Setup, job: Job) -> list[Stage]:
    """The stages for these options and this job, in order (see the module docstring)."""
    cfg, seed = setup.cfg, setup.seed
    stages: list[Stage] = []
    found = encoder_for(setup, job) if cfg.encoder else None
    if found is not None:
        rung = RefineConfig.encoder_rung(cfg, found.rung)
        starts_near = EncoderStarts(found.encoder, cfg.encoder_spread, path=found.path)
        stages.append(RefineSearch(cfg, rung, starts_near, "encoder"))
        if cfg.retry_starts:
            wide = EncoderStarts(found.encoder, cfg.retry_spread, path=found.path, stream=RETRY)
            retry = RefineConfig.retry_rung(cfg, found.rung)
            stages.append(RefineSearch(cfg, retry, wide, "retry"))
    starts = BlindStarts()
    if cfg.bank:
        needed = cfg.quick_wave().restarts if cfg.quick else cfg.restarts  # starts it supplies
        # Guided starts take their randomness from ``seed`` and the bank is only the
        # guide's training set: one bank (seed 0) then serves every seed.
        bank_seed = guide.BANK_SEED if cfg.guide else seed
        bank = BuildBank(max(cfg.bank, needed), bank_seed)
        stages.append(bank)
        if cfg.guide:
            stages.append(FitGuide(bank))
            starts = GuidedStarts()
        elif not cfg.quick:
            starts = NearestStarts()
    if cfg.quick:
        stages.append(LatentSearch(cfg.quick_wave(), NearestStarts(), "quick"))
    stages.append(LatentSearch(cfg, starts))
    stages.append(ChooseSamples())
    if setup.mode == "intermediate":
        stages.append(FeatureSearch(setup.intermediate, setup.layers))
    stages.append(SeamBlend(single=found is not None))
    return stages


def encoder_for(setup: Setup, job: Job) -> encoder.Found | None:
    """The trained encoder for the job's generator, tile, factor and operator, its file and
    rung budget; None when there is none."""
    d = setup.degrade
    low_shape = tuple(job.lr_tiles.shape[1:])
    return encoder.find(job.render.g, low_shape, setup.factor, d.kind, d.sigma)


def run(
    job: Job,
    stages: list[Stage],
    preview: Callable[[], Any] | None = None,
    state: State | None = None,
) -> Generator[Progress, None, State]:
    """Run ``stages`` in order on ``job``; yields every stage's events on one ledger with
    ``preview`` attached; returns the last state. The total is planned up front
    (:func:`~napari_pulse.job.expected_plans`) and planned again as each stage starts
    (:func:`~napari_pulse.job.plan_at`: a search counts the tiles still above eps); a stage
    that stops early leaves the rest of its share."""
    plans = expected_plans(job, stages)
    state = state or State(passes=torch.zeros(job.n_units, dtype=torch.long))
    done = 0
    for i, stage in enumerate(stages):
        plans[i] = plan_at(stage, job, state)
        total = done + sum(plans[i:])
        state = yield from relay(
            stage.run(job, state),
            lambda event, at=done, total=total: replace(
                event, done=at + event.done, total=total, preview=preview
            ),
        )
        done += plans[i]
    return state


def prepare(
    arr: np.ndarray, rgb: bool, setup: Setup, live: bool | None = None
) -> tuple[Frame, Job]:
    """The user's array as the pipeline sees it (planes in [0, 1]), and the job on its
    tiles: over the planes with a border of reflected pixels where a side spans more than
    one tile (:func:`~napari_pulse.tiling.border`; no loss reads it, and the output is cut
    to the user's pixels, so the generator's own edge falls outside the image). ``live``:
    with the tiles' preview images; None: unless the job runs in blocks
    (:mod:`napari_pulse.blocks`, whose blocks preview their own)."""
    gen, factor = setup.generator, setup.factor
    layout = Layout.of(arr, rgb, gen)
    mode = gen.card.normalization if setup.normalization == "auto" else setup.normalization
    intensity = fit_intensity(arr, mode)
    planes = layout.to_planes(intensity.to_unit(arr))  # a new float32 array: the caller's stays
    frame = Frame(layout, intensity, arr.dtype, planes)
    c, h, w = planes.shape[1:]
    th, tw = TileGrid.plan((h, w), setup.tile, factor, setup.overlap).tile
    py, px = border((h, w), (th, tw), factor)
    grid = TileGrid.plan((h + 2 * py, w + 2 * px), setup.tile, factor, setup.overlap)
    fast = pass_dtype(setup.cfg.precision, setup.device)
    render = Renderer(gen, c, (grid.tile[0] * factor, grid.tile[1] * factor), fast)
    padded = np.pad(np.clip(planes, 0, 1), ((0, 0), (0, 0), (py, py), (px, px)), mode="reflect")
    target = torch.from_numpy(padded).to(setup.device)
    if live is None:
        live = blocks.plan(grid, planes.shape[0]) is None  # blocks preview their own
    real = (py, py + h, px, px + w) if py or px else None
    job = Job.make(render, setup.degrade, grid, target, setup.cfg, setup.seed, live=live, real=real)
    return frame, job


def stream(arr: np.ndarray, rgb: bool, setup: Setup) -> Generator[Progress | Finished, None, None]:
    """A whole upscale on checked arguments (the work of :func:`napari_pulse.iter_upscale`):
    the user's array as planes and tiles, the job, the stages (on blocks of the image when
    it is large, :mod:`napari_pulse.blocks`), then the result."""
    frame, job = prepare(arr, rgb, setup)
    parts = blocks.plan(job.grid, job.n_planes)
    stages = build(setup, job)
    size = estimate(job, stages, units_at_once=blocks.BLOCK_UNITS if parts else None)
    preview = _preview(frame, job) if parts is None else None
    planned = None if parts is None else blocks.plans(job, parts, lambda b: build(setup, b))
    notes = [size.describe()] if size.large else []
    if size.large:
        log.warning(size.describe())
    foreign = domain.warning(early_score(setup, job))
    if foreign:  # said before the search, so that the user need not wait to learn it
        notes.append(f"warning: {foreign}")
    if notes:
        total = sum(expected_plans(job, stages)) if planned is None else sum(planned)
        for note in notes:
            yield Progress("plan", 0, total, 1, 1, float("inf"), preview=preview, note=note)
    if parts is None:
        state = yield from run(job, stages, preview)
    else:
        build_block = partial(build, setup)
        state = yield from blocks.run(
            job, parts, build_block, run, partial(_preview, frame), planned
        )
    yield Finished(finish(frame, job, state, setup, rgb, stages, parts))


def early_score(setup: Setup, job: Job) -> float | None:
    """The job's domain score (:mod:`napari_pulse.domain`) before any search; None where
    no domain model exists for the generator, factor and operator."""
    model = domain.for_job(setup, job)
    return None if model is None else model.score(job.lr_tiles)


def finish(
    frame: Frame,
    job: Job,
    state: State,
    setup: Setup,
    rgb: bool,
    stages: list[Stage],
    parts: list[blocks.Block] | None,
    measured: Result | None = None,
) -> Result:
    """The result of a finished job (run whole by ``stages``, or in ``parts``);
    ``measured``: its pixels, already measured against the input (the state then needs
    no mosaics; :mod:`~napari_pulse.streamed`)."""
    used = [s.starts.path for s in stages if isinstance(getattr(s, "starts", None), EncoderStarts)]
    if measured is None:
        result = assemble(frame, job, state, setup, rgb)
    else:
        result = score(measured, frame, job, state, setup, rgb)
    result.params["encoder"] = used[0].name if used else None
    rung = next((s.rcfg for s in stages if getattr(s, "name", None) == "encoder"), None)
    if rung is not None:  # the budget it ran with (the user's, or the encoder's own)
        budget = {f"encoder_{k}": getattr(rung, k) for k in encoder.RUNG_KEYS}
        result.params["search"].update(budget)
    result.params["blocks"] = len(parts) if parts else 1
    return result


def quietly(setup: Setup, job: Job) -> tuple[list[Stage], State]:
    """The stages of ``job`` run as :func:`stream` runs them, without progress: the stages
    and the last state."""
    stages = build(setup, job)
    work = run(job, stages)
    while True:
        try:
            next(work)
        except StopIteration as done:
            return stages, done.value


def search_block(setup: Setup, whole: Job, block: blocks.Block) -> blocks.Outcome:
    """One block of a job run in blocks, on its own: what it adds to the whole image
    (:class:`~napari_pulse.blocks.Gather`)."""
    ((_, job),) = blocks.jobs(whole, [block])
    return blocks.Outcome.of(quietly(setup, job)[1])


def _preview(
    frame: Frame, job: Job, canvas: blocks.Canvas | None = None, block: blocks.Block | None = None
) -> Callable[[], Any]:
    """The live preview of ``job``'s tiles; for a block, inside the whole image so far
    (blocks not reached yet: the smooth upsampling of the input)."""

    def preview() -> np.ndarray:
        tiles = job.live.view(job.n_planes, len(job.grid), *job.live.shape[1:])
        image = Mosaic(job.grid, tiles).image().cpu()
        if canvas is None or block is None:
            return frame.to_user(job.crop(image).numpy()[:, None])[0]
        whole = canvas.preview()  # painted in place: the block's own tiles go on top
        y0, y1, x0, x1 = canvas.window(block)
        whole[block.planes, :, y0:y1, x0:x1] = image
        return frame.to_user(canvas.whole.crop(whole).numpy()[:, None])[0]

    return preview
