"""The one progress-event stream that the CLI, the napari widget and callers consume."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Cancelled(Exception):
    """Raised when a caller cancels a running upscale; nothing has been returned or written."""


@dataclass(frozen=True)
class Progress:
    """One optimiser step (or phase change) of a running upscale.

    ``done``/``total`` count optimiser steps over the whole job (all batches and phases),
    so ``done / total`` is a faithful fraction for a progress bar. ``total`` is planned
    again as each stage starts (a search that runs only on the tiles still above eps
    counts just those; :func:`napari_pulse.job.plan_at`): it changes only then.
    """

    #: "bank" (warm starts), "guide" (fitting guided starts), "quick" (first wave),
    #: "search" (latent per tile), "features" (intermediate mode), "blend" (seams);
    #: "planes" for a stack on a Dask cluster (:func:`napari_pulse.batch.iter_stack`,
    #: whose ``done``/``total`` count blocks and ``batch``/``batches`` groups of planes)
    #: "plan": before any work, an event whose ``note`` is a line for the user (what a
    #: large job will take; a foreign image, :mod:`napari_pulse.domain`)
    stage: str
    done: int
    total: int
    batch: int  # 1-based index of the batch of tiles being searched
    batches: int
    best_mse: float  # worst (largest) best-so-far low-res MSE over the tiles of this batch
    #: Optional: returns the whole current best image (input units and dtype; tiles not
    #: searched yet are smooth upsamplings). Call it from the thread that iterates the
    #: stream, between events; it costs a blend, so call it a few times a second at most.
    preview: Callable[[], Any] | None = field(default=None, repr=False, compare=False)
    #: Optional: a line for the user about the whole job, such as what a large job will
    #: take (the first event of such a stream carries it; see :mod:`napari_pulse.estimate`).
    note: str = ""

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    def describe(self) -> str:
        return (
            f"{self.stage} batch {self.batch}/{self.batches}, "
            f"step {self.done}/{self.total}, worst tile mse {self.best_mse:.2e}"
        )


@dataclass(frozen=True)
class Finished:
    """The last event of a stream: carries the :class:`~napari_pulse.api.Result`."""

    result: Any


def relay(inner: Generator[T, Any, R], event: Callable[[T], Any]) -> Generator[Any, None, R]:
    """Yield ``event(item)`` for each item ``inner`` yields; return what ``inner`` returns."""
    while True:
        try:
            item = next(inner)
        except StopIteration as stop:
            return stop.value
        yield event(item)


def ticks_as_progress(
    stage: str, at: int, plan: int, batch: int, batches: int
) -> Callable[[Any], Progress]:
    """Map an optimiser loop's ticks (``steps`` done, ``worst`` MSE) to a stage's events:
    ``at`` steps of the stage's ``plan`` were done before this loop, which is ``batch`` of
    ``batches``."""
    return lambda tick: Progress(stage, at + tick.steps, plan, batch, batches, tick.worst)


@dataclass(frozen=True)
class BatchProgress:
    """A batch's progress (:mod:`napari_pulse.batch`), after every finished task.

    ``done``/``total`` count tasks (an input is one task, or one per block and one to
    finish it; ``total`` grows when an input turns out to run in blocks); ``planes`` is the
    planes finished so far, ``seconds`` the time since the batch started. ``input`` and
    ``status`` (``done``, ``skipped`` or ``failed``, with ``message``) name an input that
    just ended; None for a block's task.
    """

    done: int
    total: int
    planes: int
    seconds: float
    input: str | None = None
    status: str | None = None
    message: str = ""

    @property
    def planes_per_minute(self) -> float:
        return 60.0 * self.planes / self.seconds if self.seconds > 0 else 0.0
