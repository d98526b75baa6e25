"""Run one ``iter_upscale(...)`` on a napari worker thread and report back on the main thread.

The work is a plain Python generator (:func:`stream_events`), testable without Qt; the
worker only moves it to a thread. Progress events are forwarded at most every
``min_interval`` seconds so the main thread is never flooded; a cancel flag is polled at
every optimiser step, so Cancel takes effect within one step.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..api import iter_upscale
from ..events import Finished, Progress
from ..options import Options


@dataclass(frozen=True)
class Failed:
    """What :func:`stream_events` returns when the upscale raised: the core's message.

    Returned rather than raised, so that napari's worker does not also post the traceback.
    """

    error: BaseException

    @property
    def message(self) -> str:
        return str(self.error) or type(self.error).__name__


@dataclass(frozen=True)
class Snapshot:
    """A preview image computed on the worker thread; calling it costs nothing."""

    image: np.ndarray

    def __call__(self) -> np.ndarray:
        return self.image


def stream_events(
    image: Any,
    options: Options,
    cancel: threading.Event,
    min_interval: float = 0.1,
    preview_interval: float | None = 0.5,
    stream_of: Callable[..., Generator] = iter_upscale,
) -> Generator[Progress, None, Any]:
    """Yield (throttled) :class:`Progress` events of one upscale (``stream_of(image,
    options=options)``: :func:`~napari_pulse.iter_upscale`, or a stack's on a cluster,
    :func:`~napari_pulse.batch.iter_stack`); return the ``Result``, ``None`` when ``cancel``
    was set (the stream is closed at once), or :class:`Failed`. ``image`` may be a lazy
    array (dask, zarr): it is read here, on the worker thread.

    At most every ``preview_interval`` seconds (never when None) an event carries a
    :class:`Snapshot` of the current best image as its ``preview``, made here on the
    worker thread; other events carry none, so the main thread never touches the search.
    """
    try:
        stream = stream_of(image, options=options)
    except Exception as exc:  # noqa: BLE001 - bad choices: the core's message for the user
        return Failed(exc)
    last = last_preview = -np.inf
    try:
        for event in stream:
            if cancel.is_set():
                return None
            if isinstance(event, Finished):
                return event.result
            now = time.monotonic()
            if now - last >= min_interval or event.done >= event.total:
                last = now
                snapshot = None
                due = preview_interval is not None and now - last_preview >= preview_interval
                if due and event.preview is not None:
                    snapshot = Snapshot(event.preview())
                    last_preview = time.monotonic()
                yield replace(event, preview=snapshot)
    except Exception as exc:  # noqa: BLE001 - e.g. out of memory: reported, not a traceback
        return Failed(exc)
    finally:
        stream.close()
    return None  # pragma: no cover - iter_upscale always ends with Finished


class _QuietGC:
    """Keep Python's full garbage collections short while jobs run.

    A full (generation 2) collection holds the GIL for as long as it takes to scan every
    object; with napari, Qt and torch loaded that is 100-400 ms, and the worker's
    allocations trigger such collections every few seconds, freezing the viewer.
    ``gc.freeze()`` moves the objects that exist when the first job starts out of the
    collector's sight (they are the viewer's, long-lived); ``gc.unfreeze()`` when the last
    job ends gives them back, so nothing is leaked: cyclic garbage is only collected later.
    """

    def __init__(self) -> None:
        self.active = 0

    def enter(self) -> None:
        if self.active == 0:
            gc.freeze()
        self.active += 1

    def exit(self) -> None:
        self.active = max(0, self.active - 1)
        if self.active == 0:
            gc.unfreeze()


QUIET_GC = _QuietGC()


class UpscaleJob:
    """One running upscale: a napari ``GeneratorWorker`` plus its cancel flag and progress bar.

    ``on_result(result)`` runs on the main thread when the work finished (not when it was
    cancelled); ``on_error(exc)`` when it raised; ``on_done()`` in every case, last.
    """

    def __init__(
        self,
        image: Any,
        options: Options,
        *,
        on_result: Callable[[Any], None],
        on_error: Callable[[BaseException], None],
        on_done: Callable[[], None],
        on_progress: Callable[[Progress], None] | None = None,
        description: str = "PULSE upscale",
        stream_of: Callable[..., Generator] = iter_upscale,
    ) -> None:
        from napari.qt.threading import create_worker

        self.cancel_flag = threading.Event()
        self.cancelled = False
        self._gc_entered = False
        self._pbar = None
        self._description = description
        self._on_result, self._on_error = on_result, on_error
        self._on_done, self._on_progress = on_done, on_progress
        # Everything is connected before start(), as napari's threading docs require.
        self.worker = create_worker(
            stream_events,
            image,
            options,
            self.cancel_flag,
            stream_of=stream_of,
            _start_thread=False,
            _connect={
                "yielded": self._progress,
                "returned": self._returned,
                "errored": self._errored,
                "finished": self._finished,
            },
        )

    def start(self) -> UpscaleJob:
        QUIET_GC.enter()
        self._gc_entered = True
        self.worker.start()
        return self

    @property
    def running(self) -> bool:
        return self.worker.is_running

    def cancel(self) -> None:
        """Stop at the next optimiser step; nothing is added to the viewer."""
        self.cancelled = True
        self.cancel_flag.set()
        self.worker.quit()

    def _progress(self, event: Progress) -> None:
        if self.cancelled:
            return
        if self._pbar is None:
            from napari.utils import progress

            self._pbar = progress(total=event.total, desc=self._description)
        pbar = self._pbar  # napari may run _finished (closing it) while we update it
        if pbar.total != event.total:  # planned again as a stage starts (job.plan_at)
            pbar.total = event.total
        pbar.set_description(
            f"{self._description}: {event.stage} batch {event.batch}/{event.batches}"
        )
        pbar.n = event.done
        pbar.refresh()
        if self._on_progress is not None:
            self._on_progress(event)

    def _returned(self, result: Any) -> None:
        if self.cancelled or result is None:
            return
        if isinstance(result, Failed):
            self._on_error(result.error)
        else:
            self._on_result(result)

    def _errored(self, exc: BaseException) -> None:
        if not self.cancelled:
            self._on_error(exc)

    def _finished(self) -> None:
        if self._gc_entered:
            self._gc_entered = False
            QUIET_GC.exit()
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self._on_done()
