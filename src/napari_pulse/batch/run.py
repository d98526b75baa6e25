"""Running a batch: which inputs need work, the tasks on the cluster, the report."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import blocks
from ..events import BatchProgress
from ..generators import DomainGenerator, load
from ..generators.registry import file_of
from ..options import Options, merged, pick_device
from ..writing import companion_kinds, read_metadata
from . import work
from .cluster import SCHEDULER_ENV, Cluster, connect, wrap
from .inputs import Item, expand, plan_items
from .report import Entry, Report


def batch(
    inputs: Iterable[str | os.PathLike[str]],
    outdir: str | os.PathLike[str],
    *,
    options: Options | None = None,
    scheduler: str | None = None,
    client: Any = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: Callable[[BatchProgress], Any] | None = None,
    **settings: Any,
) -> Report:
    """Upscale every input (files, globs, folders of TIFF/PNG/JPEG, multi-page TIFFs, zarr
    and OME-Zarr arrays) into ``outdir``, on a Dask cluster, and return the report.

    Each input goes to ``outdir/<stem>.tif`` (with ``_samples``, ``_std`` and ``_error``
    companions, as ``upscale`` writes them), or to ``outdir/<stem>.zarr`` when the input is zarr
    or has more than 2048 tiles x planes; the pixels are ``upscale``'s on the same input and
    options (bit for bit on CPU with the same torch threads, up to float rounding on a busy
    machine; see the README's "Many images"). ``options`` and ``settings`` are those of
    :func:`napari_pulse.upscale` (the generator by name or file: workers load it
    themselves). ``scheduler`` (or ``$NAPARI_PULSE_SCHEDULER``) is a scheduler's address;
    ``client`` a ``distributed.Client`` to use; otherwise a local cluster of ``workers``
    processes is started and closed. Complete outputs from the same input and options are
    skipped (a rerun resumes, a zarr output from the blocks an interrupted run saved,
    :mod:`napari_pulse.streamed`); other existing outputs are kept and reported unless
    ``overwrite``. A failing input is reported (``batch-report.json`` beside the outputs)
    and the others go on. ``progress`` is called with a :class:`BatchProgress` for every
    input skipped or refused before any work, then after every task.
    """
    opts = _options(options, settings)
    out = Path(outdir).resolve()  # workers elsewhere have their own working directories
    if out.exists() and not out.is_dir():
        raise ValueError(f"OUTDIR is not a folder: {out}")
    items = plan_items(expand(inputs), out, companion_kinds(opts))
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    specs = _todo(items, opts, overwrite, report)
    t0 = time.perf_counter()
    if progress is not None:
        for entry in report.entries.values():
            if entry.status != "pending":
                event = BatchProgress(0, len(specs), 0, 0.0, entry.input, entry.status)
                progress(replace(event, message=entry.error or ""))
    cluster = cluster_for(opts, scheduler, client, workers) if specs else None
    try:
        if cluster is not None:
            report.workers, report.scheduler = cluster.n_workers, cluster.address
            specs = [replace(s, threads=cluster.threads) for s in specs]
            _run(cluster, specs, report, progress, t0)
    except KeyboardInterrupt:
        report.interrupted = True
        raise
    finally:
        report.seconds = time.perf_counter() - t0
        report.write()
        if cluster is not None:
            cluster.close()
    return report


def cluster_for(
    options: Options, scheduler: str | None, client: Any, workers: int | None
) -> Cluster:
    """``client``, else the cluster at ``scheduler`` (or ``$NAPARI_PULSE_SCHEDULER``), else
    a local cluster of ``workers`` processes (one, where the search runs on a GPU)."""
    if client is not None:
        return wrap(client)
    local = not (scheduler or os.environ.get(SCHEDULER_ENV))
    if local and workers is None and pick_device(options.device).type != "cpu":
        workers = 1  # one GPU: worker processes would all share it (cuda:0)
    return connect(scheduler, workers)


def _options(options: Options | None, settings: dict[str, Any]) -> Options:
    """The options checked, with the generator's file as an absolute path."""
    opts = merged(options, settings)
    g = opts.generator
    if isinstance(g, DomainGenerator):
        raise TypeError(
            "a batch needs the generator by name or by a file its workers can read, "
            f"not a loaded generator ({g.name!r})"
        )
    if g is not None:
        load(g)  # an unknown name or a bad file is an error before any work
        path = file_of(g)
        if path is not None:  # workers elsewhere have their own working directories
            opts = replace(opts, generator=str(path.resolve()))
    return opts


def _stamp(path: Path) -> list:
    """A file's (or every file of a folder's) path, size and modification time."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def batch_key(item: Item, options: Options) -> str:
    """What an output records of its input, generator file and options: equal keys, equal
    outputs. Files are known by size and modification time (a zarr input by all of its)."""
    g = options.generator
    weights = None if g is None or file_of(g) is None else _stamp(Path(g))
    text = json.dumps(
        {
            "input": _stamp(item.source),
            "generator_file": weights,
            "options": options.describe(),
            "blocks": [blocks.BLOCK_UNITS, blocks.BLOCK_TILES, blocks.GROUP_UNITS],
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _todo(items: list[Item], opts: Options, overwrite: bool, report: Report) -> list[work.Spec]:
    """The inputs that need work; the rest are entered as skipped (complete) or failed
    (an output is in the way)."""
    specs, kinds = [], companion_kinds(opts)
    for item in items:
        entry = report.entry(item.source)
        try:
            key = batch_key(item, opts)
        except OSError as exc:
            _fail(entry, exc)
            continue
        mains = [item.tiff_outs(kinds)[0], item.zarr_out]
        found = {p: read_metadata(p) for p in item.outputs(kinds) if p.exists()}
        ours = {p for p, meta in found.items() if meta is not None and meta.get("batch_key") == key}
        done = [p for p in mains if p in ours]  # a TIFF set's main file is written last
        if done:
            meta = found[done[0]]
            entry.status, entry.outputs = "skipped", [str(p) for p in found if p in ours]
            entry.lr_psnr, entry.success = _number(meta.get("lr_psnr")), meta.get("success")
            entry.in_domain = meta.get("in_domain")
            entry.expected_error = _number(meta.get("expected_error"))
            shutil.rmtree(work.parts_folder(item), ignore_errors=True)  # left by a crash
            continue
        others = [p for p in found if p not in ours]
        if others and not overwrite:
            entry.status = "failed"
            entry.error = (
                f"{others[0]} exists from another input or other options; "
                "pass --overwrite (overwrite=True) to replace it, or choose another OUTDIR"
            )
            continue
        _sweep(item, kinds)
        specs.append(work.Spec.of(item, opts, key))
    return specs


def _number(value: Any) -> float | None:
    """A recorded figure as a float (zarr attributes keep NaN and infinity as strings)."""
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _sweep(item: Item, kinds: tuple[str, ...]) -> None:
    """Remove what an interrupted write of this input's outputs left under temporary names."""
    for out in item.outputs(kinds):
        for left in out.parent.glob(f".{glob.escape(out.name)}.*"):
            if left.suffix in (".tmp", ".old"):
                shutil.rmtree(left) if left.is_dir() else left.unlink(missing_ok=True)


def _fail(entry: Entry, exc: BaseException) -> None:
    entry.status = "failed"
    entry.error = f"{type(exc).__name__}: {exc}"


def _run(
    cluster: Cluster,
    specs: list[work.Spec],
    report: Report,
    progress: Callable[[BatchProgress], Any] | None,
    t0: float,
) -> None:
    """Every spec's tasks on the cluster; entries filled in as they end."""
    from distributed import as_completed

    client = cluster.client
    queue = as_completed(loop=client.loop)  # this client's, not the default one
    tasks: dict[Any, tuple[str, work.Spec]] = {}
    counts = {"done": 0, "total": len(specs), "planes": 0}

    def submit(fn: Callable, spec: work.Spec, *args: Any) -> Any:
        key = f"{fn.__name__}-{spec.item.stem}-{uuid.uuid4().hex[:8]}"
        future = client.submit(fn, spec, *args, key=key, pure=False)
        tasks[future] = (fn.__name__, spec)
        queue.add(future)
        return future

    def emit(entry: Entry | None, note: str = "") -> None:
        """The progress after a task (``entry``: an input that ended; ``note``: a line for
        the user when none did)."""
        if entry is not None:  # the report says what ended so far, should the batch be killed
            report.seconds = time.perf_counter() - t0
            report.write()
        if progress is not None:
            progress(
                BatchProgress(
                    counts["done"],
                    counts["total"],
                    counts["planes"],
                    time.perf_counter() - t0,
                    None if entry is None else entry.input,
                    None if entry is None else entry.status,
                    note if entry is None or entry.error is None else entry.error,
                )
            )

    for spec in specs:
        submit(work.start, spec)
    if progress is not None:
        progress(BatchProgress(0, len(specs), 0, 0.0, message=cluster.describe()))
    try:
        for future in queue:
            kind, spec = tasks.pop(future)
            counts["done"] += 1
            if kind == "search":  # a block's failure comes through its input's finish
                emit(None)
                continue
            entry = report.entry(spec.item.source)
            try:
                value = future.result()
            except Exception as exc:  # noqa: BLE001 - the input fails, the batch goes on
                _fail(entry, exc)
                emit(entry)
                continue
            if isinstance(value, work.Blocked):
                found = [submit(work.search, spec, i) for i in value.todo]
                submit(work.finish, spec, *found)
                counts["total"] += len(found) + 1
                entry.blocks_saved = value.blocks - len(value.todo)
                entry.seconds = value.seconds
                note = (
                    f"{entry.input}: {entry.blocks_saved} of {value.blocks} blocks saved "
                    f"by an earlier run, {len(found)} to search"
                )
                emit(None, note if entry.blocks_saved else "")
                continue
            entry.status, entry.outputs = "done", value.outputs
            entry.seconds = (entry.seconds or 0.0) + value.seconds
            entry.lr_psnr, entry.success = value.lr_psnr, value.success
            entry.in_domain, entry.expected_error = value.in_domain, value.expected_error
            entry.planes, entry.blocks = value.planes, value.blocks
            counts["planes"] += value.planes
            emit(entry)
    except BaseException:
        client.cancel(list(tasks))
        raise
    finally:
        try:
            client.run(work.forget)  # no worker keeps an input after the batch
        except Exception:  # noqa: BLE001 - a worker gone or going: nothing of ours left there
            pass
