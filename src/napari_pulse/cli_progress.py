"""The training commands' progress: a bar on stderr, or a line now and then with --quiet."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from tqdm import tqdm

R = TypeVar("R")


def with_bar(
    work: Callable[[Callable[[Any], None]], R],
    steps: int,
    quiet: bool,
    every: int,
    line: Callable[[Any], str],
    postfix: Callable[[Any], dict[str, str]],
    phase: Callable[[Any], str] | None = None,
    mininterval: float = 2,
) -> R:
    """``work(show)``, a training loop that calls ``show(event)`` at every step (an event
    with ``step``), shown as a bar of ``steps`` with ``postfix(event)`` (and ``phase``);
    with ``quiet``, ``line(event)`` printed every ``every`` steps instead."""
    bar = tqdm(total=steps, unit="step", disable=quiet, mininterval=mininterval, file=sys.stderr)

    def show(event: Any) -> None:
        if quiet:
            if event.step % every == 0:
                print(line(event), flush=True)
            return
        bar.n = event.step
        if phase is not None:
            bar.set_description_str(phase(event), refresh=False)
        bar.set_postfix(**postfix(event), refresh=False)
        bar.refresh()

    try:
        return work(show)
    finally:
        bar.close()
