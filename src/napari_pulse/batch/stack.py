"""One stack upscaled on a Dask cluster, its groups of planes shown as they finish.

:func:`iter_stack` is :func:`napari_pulse.iter_upscale` with the work sent to a cluster:
every block of ``upscale``'s plan (:mod:`napari_pulse.blocks`: a group of whole planes, or a
block of a large plane) is one task of :func:`~napari_pulse.batch.work.search`, on the
array sent to the cluster once. Outcomes come back in any order; each group's are added in
the plan's order, as ``upscale`` adds them, so the result is ``upscale``'s bit for bit on
CPU with the same torch threads. The viewer runs a stack's "all planes" this way when a
scheduler is set (``NAPARI_PULSE_SCHEDULER``), and shows the output filling in.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Generator
from dataclasses import replace
from typing import Any

import numpy as np

from .. import blocks, pipeline
from ..api import check_image
from ..events import Finished, Progress
from ..intensity import cast_like
from ..job import Job
from ..options import Options, Setup
from ..result import Frame
from . import work
from .cluster import Cluster
from .run import _options, cluster_for


def iter_stack(
    image: Any,
    *,
    options: Options | None = None,
    scheduler: str | None = None,
    client: Any = None,
    workers: int | None = None,
    poll: float = 0.25,
    **settings: Any,
) -> Generator[Progress | Finished, None, None]:
    """``upscale(image)`` on a Dask cluster, as a stream of events ending in
    :class:`Finished` with the result ``upscale`` gives.

    ``scheduler``/``client``/``workers`` choose the cluster as :func:`~napari_pulse.batch.batch`
    does (a local cluster is started, and closed at the end, when neither is given). A
    :class:`Progress` event (stage ``"planes"``; ``done``/``total`` count blocks,
    ``batch``/``batches`` groups of planes) comes when a block finishes and every ``poll``
    seconds; its ``preview`` returns the output so far in the input's units and dtype, the
    best sample of every finished plane and zeros elsewhere. Closing the stream cancels the
    tasks. A failing task ends the stream with its error; so do bad options and an
    unreachable scheduler, at the first event (unlike ``iter_upscale``, nothing is checked
    before the stream is returned).
    """
    opts = _options(options, settings)
    arr, rgb = check_image(image, opts.rgb)
    setup = opts.resolve(rgb)
    frame, whole = pipeline.prepare(arr, rgb, setup, live=False)
    parts = blocks.plan(whole.grid, whole.n_planes)
    cluster = cluster_for(opts, scheduler, client, workers)
    try:
        if parts is None:  # one plane that runs whole: one task
            result = yield from _whole(cluster, arr, opts, frame, whole, poll)
        else:
            result = yield from _run(cluster, arr, opts, frame, whole, parts, setup, rgb, poll)
    finally:
        cluster.close()
    yield Finished(result)


def _spec(cluster: Cluster, opts: Options) -> work.Spec:
    return replace(work.Spec.of(None, opts, uuid.uuid4().hex), threads=cluster.threads)


def _whole(
    cluster: Cluster, arr: np.ndarray, opts: Options, frame: Frame, whole: Job, poll: float
) -> Generator[Progress, None, Any]:
    """One task for an image that runs whole; returns its result."""
    spec, note = _spec(cluster, opts), f"one task on {cluster.describe()}"
    future = cluster.client.submit(work.upscale_array, spec, arr, key=f"whole-{spec.key}")
    shown = Shown(frame, whole)
    try:
        while not future.done():
            yield Progress("planes", 0, 1, 0, 1, float("inf"), preview=shown.copy, note=note)
            time.sleep(poll)
        result = future.result()
    finally:
        future.cancel()
    shown.image[...] = result.image
    yield Progress("planes", 1, 1, 1, 1, float("inf"), preview=shown.copy, note=note)
    return result


def _run(
    cluster: Cluster,
    arr: np.ndarray,
    opts: Options,
    frame: Frame,
    whole: Job,
    parts: list[blocks.Block],
    setup: Setup,
    rgb: bool,
    poll: float,
) -> Generator[Progress, None, Any]:
    """The blocks' tasks, their outcomes added group by group; returns the result."""
    client, spec = cluster.client, _spec(cluster, opts)
    data = client.scatter(arr, hash=False)  # its own key: an equal array may be in use
    futures = {
        client.submit(work.search, spec, i, data, key=f"block-{i}-{spec.key}", pure=False): i
        for i in range(len(parts))
    }
    groups = blocks.groups(parts)
    gather, shown = blocks.Gather(whole, parts), Shown(frame, whole)
    found: dict[int, blocks.Outcome] = {}
    added: set[int] = set()
    pending = set(futures)
    note = f"{len(parts)} blocks on {cluster.describe()}"
    try:
        while pending:
            finished = [f for f in pending if f.done()]
            for future in finished:
                pending.discard(future)
                found[futures[future]] = future.result()[0]  # a task's error ends the stream
            for g, members in enumerate(groups):
                if g not in added and all(i in found for i in members):
                    for i in members:  # in plan order, as upscale adds them
                        gather.add(parts[i], parts[i].units(whole.grid, len(whole.grid)), found[i])
                        del found[i]
                    added.add(g)
                    shown.paint(gather.canvas, parts[members[0]].planes)
            yield Progress(
                "planes", len(futures) - len(pending), len(futures), len(added), len(groups),
                float("inf"), preview=shown.copy, note=note,
            )  # fmt: skip
            if pending and not finished:
                time.sleep(poll)
    finally:
        client.cancel(list(pending))
        try:
            client.run(work.forget, spec.key)
        except Exception:  # noqa: BLE001 - a worker gone or going: nothing of ours left there
            pass
    stages = pipeline.build(setup, whole)
    return pipeline.finish(frame, whole, gather.state(), setup, rgb, stages, parts)


class Shown:
    """The output so far in the input's units and dtype, painted plane by plane: the best
    sample of every finished plane (of every finished RGB plane when a grayscale generator
    upscales its channels apart), zeros elsewhere."""

    def __init__(self, frame: Frame, whole: Job) -> None:
        self.frame = frame
        self.per = 3 if frame.layout.split_channels else 1  # search planes per shown plane
        self.one = replace(frame.layout, lead=(1,))  # the layout of one shown plane
        self.whole = whole
        f, c, (y0, y1, x0, x1) = whole.grid.factor, whole.planes.shape[1], whole.real_box
        one = np.zeros((self.per, 1, c, (y1 - y0) * f, (x1 - x0) * f), np.float32)
        tail = self._user(one).shape
        self.image = np.zeros((*frame.layout.lead, *tail), frame.dtype)
        self._flat = self.image.reshape(-1, *tail)  # a view: painting it paints the image
        self._planes = np.zeros(whole.n_planes, bool)
        self._painted = np.zeros(len(self._flat), bool)

    def _user(self, x: np.ndarray) -> np.ndarray:
        """One shown plane's search planes ``(per, 1, C, H, W)`` in the input's units."""
        unit = self.one.from_planes(x)[0, 0]
        return cast_like(self.frame.intensity.from_unit(unit), self.frame.dtype)

    def paint(self, canvas: blocks.Canvas, planes: slice) -> None:
        """Paint the finished search planes ``planes`` (and any shown plane they complete)."""
        self._planes[planes] = True
        complete = self._planes.reshape(-1, self.per).all(axis=1)
        for j in np.flatnonzero(complete & ~self._painted):
            x = self.whole.crop(canvas.planes(slice(j * self.per, (j + 1) * self.per))[:, :1])
            x = x.numpy()
            self._flat[j] = self._user(x)
            self._painted[j] = True

    def copy(self) -> np.ndarray:
        """The output so far (a copy, safe to hand to another thread)."""
        return self.image.copy()
