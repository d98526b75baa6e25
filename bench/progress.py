"""Does the progress bar follow the work? The bar's fraction (``done / total`` of the
``Progress`` events) against the share of the wall time gone, over one upscale.

The input: the bundled 64x64 nuclei sample (``data/nuclei_lr.png``), x4 with ``nuclei`` and
every default, for each ``--seeds`` (seed 1 sends two tiles on to the retry rung). Printed
per seed: the wall time, the bar's fraction when a quarter, half and three quarters of the
time had gone, the largest gap between the two (in points of 100), and how often ``total``
changed. Run it under an earlier version with ``PYTHONPATH=<its src>`` to compare.

    python bench/progress.py [--seeds 0 1] [--threads 2]
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

import napari_pulse
from harness import begin, parser, report
from napari_pulse.events import Progress

SAMPLE = Path(napari_pulse.__file__).parent / "data" / "nuclei_lr.png"


def trace(image: np.ndarray, seed: int) -> tuple[list[tuple[float, float]], int, float]:
    """``(seconds, fraction)`` at every event, the number of total changes, wall time."""
    t0, points, totals = time.perf_counter(), [], []
    for event in napari_pulse.iter_upscale(image, generator="nuclei", factor=4, seed=seed):
        if isinstance(event, Progress) and event.stage != "plan":
            points.append((time.perf_counter() - t0, event.fraction))
            totals.append(event.total)
    wall = time.perf_counter() - t0
    changes = sum(a != b for a, b in zip(totals, totals[1:], strict=False))
    return points, changes, wall


def at(points: list[tuple[float, float]], t: float) -> float:
    """The bar's fraction at time ``t`` (the last event before it)."""
    before = [f for s, f in points if s <= t]
    return before[-1] if before else 0.0


def main() -> None:
    p = parser(__doc__)
    p.set_defaults(threads=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = p.parse_args()
    begin(args)
    image = np.asarray(Image.open(SAMPLE).convert("L"))
    for seed in args.seeds:
        points, changes, wall = trace(image, seed)
        grid = np.linspace(0, wall, 201)
        gap = max(abs(at(points, t) - t / wall) for t in grid)
        report(
            f"seed {seed}",
            seconds=f"{wall:.1f}",
            bar_at_25_50_75_percent_of_time="/".join(
                f"{100 * at(points, q * wall):.0f}" for q in (0.25, 0.5, 0.75)
            ),
            largest_gap_points=f"{100 * gap:.0f}",
            total_changes=changes,
        )


if __name__ == "__main__":
    main()
