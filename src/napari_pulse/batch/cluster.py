"""Where a batch runs: an existing Dask cluster by its scheduler's address, or a local
cluster of worker processes sized for this machine."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The environment variable that names a scheduler when ``--scheduler`` is not given.
SCHEDULER_ENV = "NAPARI_PULSE_SCHEDULER"


def cores() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def local_size(workers: int | None = None) -> tuple[int, int]:
    """Worker processes and torch threads per worker for a local cluster: one worker per
    core with one thread each, unless ``workers`` is given (the cores are then shared out
    among them; more workers than cores get one thread each). On a 2-core machine, 2
    workers x 1 thread and 1 worker x 2 threads tie (``bench/batch.py``)."""
    n = cores()
    workers = n if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return workers, max(1, n // workers)


@dataclass
class Cluster:
    """A connected client, how to close what was opened for it, and the torch threads
    the workers should use (None: theirs are left as they are)."""

    client: Any
    close: Callable[[], None]
    threads: int | None
    address: str
    dashboard: str | None

    @property
    def n_workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {}))

    def describe(self) -> str:
        """Where the batch runs, in a line (with the dashboard's address when served)."""
        threads = "" if self.threads is None else f" x {self.threads} torch thread(s)"
        where = f"{self.n_workers} worker(s){threads} at {self.address}"
        return where + (f"; dashboard: {self.dashboard}" if self.dashboard else "")


def connect(scheduler: str | None = None, workers: int | None = None) -> Cluster:
    """A client of the scheduler at ``scheduler`` (or ``$NAPARI_PULSE_SCHEDULER``); without
    one, a new local cluster (:func:`local_size`) that :attr:`Cluster.close` shuts down."""
    import dask
    from distributed import Client, LocalCluster

    address = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if address:
        try:
            client = Client(address, timeout="20s")
        except OSError as exc:
            raise OSError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
        return Cluster(client, client.close, None, address, _dashboard(client))
    n, threads = local_size(workers)
    # The workers' statistical profiler samples every thread's stack 100 times a second,
    # which slows a Python-driven optimiser loop down (bench/batch.py); it is only for the
    # dashboard's profile page.
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: never another cluster's
            silence_logs=logging.CRITICAL,  # a failing input is in the report, not a traceback
        )
    client = Client(cluster)

    def close() -> None:
        client.close()
        cluster.close()

    return Cluster(client, close, threads, cluster.scheduler_address, _dashboard(client))


def wrap(client: Any) -> Cluster:
    """A client the caller made and keeps (closing the batch leaves it open)."""
    return Cluster(client, lambda: None, None, str(client.scheduler.address), _dashboard(client))


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def _dashboard(client: Any) -> str | None:
    """The dashboard's address when the scheduler serves one (its pages need bokeh where
    the scheduler runs; without it the address answers 404)."""
    try:
        services = client.scheduler_info().get("services", {})
        served = "dashboard" in services and client.run_on_scheduler(_has_bokeh)
    except Exception:  # noqa: BLE001 - a scheduler that cannot say has none for us
        return None
    return client.dashboard_link if served else None
