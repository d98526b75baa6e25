"""The tasks a batch runs on its workers, one input at a time.

:func:`start` reads an input and prepares it as ``upscale`` does; an input that runs whole
it then upscales with ``upscale``'s own stages and writes; for an input that ``upscale``
runs in blocks (:mod:`napari_pulse.blocks`), it returns how many: each block is then one
:func:`search` task, and :func:`finish` adds their outcomes in the blocks' order (as
``upscale`` does), measures the result and writes it. An input whose output goes to zarr
(:func:`large`) keeps its blocks' outcomes on disk beside the output, not in memory
(:mod:`napari_pulse.streamed`): a rerun searches only the blocks not saved yet, and the
finish writes the zarr a window at a time. The generator is loaded once per worker process
(the registry keeps what it loaded); the input and its prepared job are kept for the next
task of the same input.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__, blocks, pipeline, streamed
from ..api import check_image
from ..job import Job
from ..options import Options, Setup
from ..result import Frame, Result, error_model
from ..writing import (
    atomic_group,
    companion_kinds,
    metadata,
    read_metadata,
    set_metadata,
    write_tiffs,
    write_zarr,
)
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
    expected_error: float | None = None  # share of the range; None: no error model


@dataclass(frozen=True)
class Blocked:
    """An input that runs in ``blocks`` blocks (then one :func:`finish`); ``todo``: the
    blocks to search (the others were saved by an earlier run)."""

    blocks: int
    planes: int
    seconds: float
    todo: tuple[int, ...] = ()


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
            _parts_keys.clear()
        else:
            _prepared.pop(key, None)
            _parts_keys.pop(key, None)


def start(spec: Spec) -> Done | Blocked:
    """Upscale the input whole and write it; or, when it runs in blocks, say how many."""
    t0 = time.perf_counter()
    _configure(spec)
    _, rgb, setup, frame, whole, parts = _prepare(spec)
    if parts is not None:
        todo = range(len(parts))
        if spills(spec, whole):
            todo = store_of(spec).open().missing(len(parts))
        return Blocked(len(parts), whole.n_planes, time.perf_counter() - t0, tuple(todo))
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


def search(spec: Spec, index: int, array: Any = None) -> tuple[blocks.Outcome | None, float]:
    """Block ``index`` of the input (``array``, else its file) searched; its outcome (None
    where it was saved to disk, :func:`spills`) and the seconds it took."""
    t0 = time.perf_counter()
    _configure(spec)
    _, _, setup, _, whole, parts = _prepare(spec, array)
    outcome = pipeline.search_block(setup, whole, parts[index])
    if index != len(parts) - 1:
        outcome.bank = None  # the result takes the last block's bank: the others stay here
    if array is None and spills(spec, whole):
        store_of(spec).save(index, outcome)  # opened by the input's start
        return None, time.perf_counter() - t0
    return outcome, time.perf_counter() - t0


def finish(spec: Spec, *found: tuple[blocks.Outcome | None, float]) -> Done:
    """The blocks' outcomes added in order, the result measured and written (``found``:
    the outcomes of every block, or of those searched in this run where they were saved
    to disk)."""
    t0 = time.perf_counter()
    _configure(spec)
    _, rgb, setup, frame, whole, parts = _prepare(spec)
    stages = pipeline.build(setup, whole)
    if spills(spec, whole):
        again = _written(spec, whole.n_planes, len(parts))
        if again is not None:
            store_of(spec).remove()
            forget(spec.key)
            return again
        result, outs = _finish_on_disk(spec, frame, whole, parts, setup, rgb, stages)
    else:
        gather = blocks.Gather(whole, parts)
        for block, (outcome, _) in zip(parts, found, strict=True):
            gather.add(block, block.units(whole.grid, len(whole.grid)), outcome)
        result = pipeline.finish(frame, whole, gather.state(), setup, rgb, stages, parts)
        outs = _write(spec, result, large(spec, whole))
    forget(spec.key)
    searched = sum(seconds for _, seconds in found)  # the blocks' own time, where they ran
    return _done(result, outs, whole.n_planes, len(parts), t0 - searched)


def _written(spec: Spec, planes: int, n_blocks: int) -> Done | None:
    """The input's zarr when this very finish wrote it already (run again because its
    worker died before it said so), else None."""
    meta = read_metadata(spec.item.zarr_out)
    if meta is None or meta.get("batch_key") != spec.key:
        return None
    lr_psnr, success = float(meta["lr_psnr"]), bool(meta["success"])
    return Done(
        [str(spec.item.zarr_out)],
        planes,
        n_blocks,
        lr_psnr,
        success,
        0.0,
        meta.get("in_domain"),
        meta.get("expected_error"),
    )


def _finish_on_disk(
    spec: Spec,
    frame: Frame,
    whole: Job,
    parts: list[blocks.Block],
    setup: Setup,
    rgb: bool,
    stages: list,
) -> tuple[Result, list[Path]]:
    """The zarr output written from the blocks saved on disk, a window at a time, then
    the saved blocks removed: the result (its arrays those of the written group, which
    only live until it is renamed into place) and the output."""
    store, out = store_of(spec), spec.item.zarr_out
    missing = store.open().missing(len(parts))
    if missing:
        raise RuntimeError(f"blocks {missing} of {spec.item.source} were not saved")
    gather = blocks.Gather(whole, parts, canvas=False)
    for i, block in enumerate(parts):
        gather.add(block, block.units(whole.grid, len(whole.grid)), store.figures(i))
    with atomic_group(out) as group:
        errors = error_model(setup)
        measured = streamed.write(group, frame, whole, parts, store, whole.cfg.eps, errors)
        state = gather.state()
        result = pipeline.finish(frame, whole, state, setup, rgb, stages, parts, measured)
        meta = metadata(result, spec.item.source, "image", batch_key=spec.key)
        set_metadata(group, meta)
    store.remove()
    return result, [out]


def large(spec: Spec, whole: Job) -> bool:
    """Whether an input's outputs go to zarr: a zarr input, or more than
    :data:`~napari_pulse.blocks.BLOCK_UNITS` tiles x planes (TIFF otherwise)."""
    return is_zarr(spec.item.source) or whole.n_units > blocks.BLOCK_UNITS


def spills(spec: Spec, whole: Job) -> bool:
    """Whether the blocks of an input that runs in blocks are saved to disk and its zarr
    written a window at a time: a file's input whose output goes to zarr."""
    return spec.item is not None and large(spec, whole)


def store_of(spec: Spec) -> streamed.OutcomeStore:
    """Where an input's saved blocks are kept (:func:`parts_folder`), under a key that adds
    to the input's what else its blocks depend on: this code's version, and the encoder
    file the search finds (one trained between two runs must not mix into one image)."""
    with _lock:
        key = _parts_keys.get(spec.key)
    if key is None:
        _, _, setup, _, whole, _ = _prepare(spec)
        found = pipeline.encoder_for(setup, whole) if setup.cfg.encoder else None
        path = None if found is None else Path(found.path)
        stamp = None if path is None else [str(path), path.stat().st_size, path.stat().st_mtime_ns]
        key = json.dumps([spec.key, __version__, stamp])
        with _lock:
            _parts_keys[spec.key] = key
    return streamed.OutcomeStore(parts_folder(spec.item), key)


#: The saved blocks' keys of the inputs this worker prepared, by their specs' keys.
_parts_keys: dict[str, str] = {}


def parts_folder(item: Item) -> Path:
    """``OUTDIR/.<stem>.zarr.parts``: the saved blocks of an input whose zarr is not
    written yet."""
    return item.zarr_out.with_name(f".{item.zarr_out.name}.parts")


def _write(spec: Spec, result: Result, zarr: bool) -> list[Path]:
    item, extra = spec.item, {"batch_key": spec.key}
    if zarr:
        write_zarr(result, item.source, item.zarr_out, **extra)
        return [item.zarr_out]
    outs = item.tiff_outs(companion_kinds(spec.options))
    return write_tiffs(result, item.source, outs, **extra)


def _done(result: Result, outs: list[Path], planes: int, n_blocks: int, t0: float) -> Done:
    return Done(
        [str(p) for p in outs],
        planes,
        n_blocks,
        float(result.lr_psnr),
        bool(result.success),
        time.perf_counter() - t0,
        result.in_domain,
        None if result.error is None else result.expected_rms()[1],
    )
