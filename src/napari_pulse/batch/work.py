"""The tasks a batch runs on its workers, one input at a time.

:func:`start` reads an input and prepares it as ``upscale`` does; an input that runs whole
it then upscales with ``upscale``'s own stages and writes; for an input that ``upscale``
runs in blocks (:mod:`napari_pulse.blocks`), it returns how many: each block is then one
:func:`search` task, and :func:`finish` adds their outcomes in the blocks' order (as
``upscale`` does), measures the result and writes it. The generator is loaded once per
worker process (the registry keeps what it loaded); the input and its prepared job are kept
for the next task of the same input.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import blocks, pipeline
from ..api import check_image
from ..job import Job
from ..options import Options
from ..result import Result
from ..writing import write_tiffs, write_zarr
from .inputs import Item, is_zarr, read


@dataclass(frozen=True)
class Spec:
    """One input's work: where it goes (None for an array sent with the tasks), the options
    (the generator by name or absolute path), the key its outputs record, and the settings
    the worker takes from the client (block sizes, torch threads; None leaves the worker's
    own)."""

    item: Item | None
    options: Options
    key: str
    block_units: int
    block_tiles: int
    group_units: int
    threads: int | None = None

    @classmethod
    def of(cls, item: Item | None, options: Options, key: str) -> Spec:
        """The spec with this process's block sizes (:mod:`napari_pulse.blocks`)."""
        sizes = blocks.BLOCK_UNITS, blocks.BLOCK_TILES, blocks.GROUP_UNITS
        return cls(item, options, key, *sizes)


@dataclass(frozen=True)
class Done:
    """An input finished: its outputs, scores and the seconds its last task took."""

    outputs: list[str]
    planes: int
    blocks: int
    lr_psnr: float
    success: bool
    seconds: float
    in_domain: bool | None = None  # None: no domain model for the generator and factor


@dataclass(frozen=True)
class Blocked:
    """An input that runs in ``blocks`` tasks (then one :func:`finish`)."""

    blocks: int
    planes: int
    seconds: float


#: The last inputs' prepared jobs, by their specs' keys (a worker may run tasks in threads).
_prepared: dict[str, tuple] = {}
_lock = threading.Lock()
#: Prepared inputs a worker keeps (a worker's threads may work on different inputs).
KEEP = 2


def _configure(spec: Spec) -> None:
    blocks.BLOCK_UNITS, blocks.BLOCK_TILES = spec.block_units, spec.block_tiles
    blocks.GROUP_UNITS = spec.group_units
    _malloc_as_usual()
    if spec.threads is not None and torch.get_num_threads() != spec.threads:
        torch.set_num_threads(spec.threads)


_tuned: list[bool] = []


def _malloc_as_usual() -> None:
    """Undo, once per worker process, what Dask's nanny does to glibc's allocator.

    The nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``; setting it at all
    turns off glibc's adaptive mmap threshold, so every large tensor is mapped and unmapped
    afresh, and the search ran 3.0-4.5x slower in a worker than in a plain process
    (``bench/batch.py``). Fixing the thresholds at glibc's own adaptive ceiling (mmap 32
    MiB, trim twice that) brings it back to plain speed."""
    if _tuned or "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return
    _tuned.append(True)
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl): nothing to undo
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 * 2**20)
    libc.mallopt(m_trim_threshold, 64 * 2**20)


def _prepare(spec: Spec, array: Any = None) -> tuple:
    """The input (``array``, else read from its file) prepared as ``upscale`` prepares it:
    ``(array, rgb, setup, frame, whole job, blocks)`` (kept for the input's next task on
    this worker)."""
    with _lock:  # one read of an input at a time, whatever the worker's threads
        found = _prepared.get(spec.key)
        if found is None:
            source = read(spec.item.source) if array is None else array
            arr, rgb = check_image(source, spec.options.rgb)
            setup = spec.options.resolve(rgb)
            frame, whole = pipeline.prepare(arr, rgb, setup)  # live (preview) when whole
            parts = blocks.plan(whole.grid, whole.n_planes)
            found = (arr, rgb, setup, frame, whole, parts)
            while len(_prepared) >= KEEP:
                _prepared.pop(next(iter(_prepared)))
            _prepared[spec.key] = found
        return found


def forget(key: str | None = None) -> None:
    """Drop what this worker keeps of an input (of every input without ``key``)."""
    with _lock:
        if key is None:
            _prepared.clear()
        else:
            _prepared.pop(key, None)


def start(spec: Spec) -> Done | Blocked:
    """Upscale the input whole and write it; or, when it runs in blocks, say how many."""
    t0 = time.perf_counter()
    _configure(spec)
    _, rgb, setup, frame, whole, parts = _prepare(spec)
    if parts is not None:
        return Blocked(len(parts), whole.n_planes, time.perf_counter() - t0)
    forget(spec.key)  # a whole input needs nothing kept
    stages, state = pipeline.quietly(setup, whole)
    result = pipeline.finish(frame, whole, state, setup, rgb, stages, None)
    outs = _write(spec, result, large(spec, whole))
    return _done(result, outs, whole.n_planes, 1, t0)


def upscale_array(spec: Spec, array: Any) -> Result:
    """``upscale`` of an array that runs whole (one plane, not large), on a worker."""
    _configure(spec)
    _, rgb, setup, frame, whole, _ = _prepare(spec, array)
    forget(spec.key)
    stages, state = pipeline.quietly(setup, whole)
    return pipeline.finish(frame, whole, state, setup, rgb, stages, None)


def search(spec: Spec, index: int, array: Any = None) -> tuple[blocks.Outcome, float]:
    """Block ``index`` of the input (``array``, else its file) searched; its outcome and
    the seconds it took."""
    t0 = time.perf_counter()
    _configure(spec)
    _, _, setup, _, whole, parts = _prepare(spec, array)
    outcome = pipeline.search_block(setup, whole, parts[index])
    if index != len(parts) - 1:
        outcome.bank = None  # the result takes the last block's bank: the others stay here
    return outcome, time.perf_counter() - t0


def finish(spec: Spec, *found: tuple[blocks.Outcome, float]) -> Done:
    """The blocks' outcomes added in order, the result measured and written."""
    t0 = time.perf_counter()
    _configure(spec)
    _, rgb, setup, frame, whole, parts = _prepare(spec)
    gather = blocks.Gather(whole, parts)
    for block, (outcome, _) in zip(parts, found, strict=True):
        gather.add(block, block.units(whole.grid, len(whole.grid)), outcome)
    stages = pipeline.build(setup, whole)
    result = pipeline.finish(frame, whole, gather.state(), setup, rgb, stages, parts)
    forget(spec.key)
    outs = _write(spec, result, large(spec, whole))
    searched = sum(seconds for _, seconds in found)  # the blocks' own time, where they ran
    return _done(result, outs, whole.n_planes, len(parts), t0 - searched)


def large(spec: Spec, whole: Job) -> bool:
    """Whether an input's outputs go to zarr: a zarr input, or more than
    :data:`~napari_pulse.blocks.BLOCK_UNITS` tiles x planes (TIFF otherwise)."""
    return is_zarr(spec.item.source) or whole.n_units > blocks.BLOCK_UNITS


def _write(spec: Spec, result: Result, zarr: bool) -> list[Path]:
    item, extra = spec.item, {"batch_key": spec.key}
    if zarr:
        write_zarr(result, item.source, item.zarr_out, **extra)
        return [item.zarr_out]
    outs = item.tiff_outs(spec.options.samples)
    write_tiffs(result, item.source, outs, **extra)
    return outs


def _done(result: Result, outs: list[Path], planes: int, n_blocks: int, t0: float) -> Done:
    return Done(
        [str(p) for p in outs],
        planes,
        n_blocks,
        float(result.lr_psnr),
        bool(result.success),
        time.perf_counter() - t0,
        result.in_domain,
    )
