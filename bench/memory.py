"""Peak memory of an upscale against the size of the image, at the default restarts.

Each case runs in a fresh process (peak resident memory, ``ru_maxrss``, is per process):
a synthetic uint8 field (smoothed noise, fixed seed) of 256x256, 1024x1024 and 4000x4000
low-res pixels, upscaled x4 with ``nuclei`` and the default settings (96 restarts), once
in three cases: ``default`` (the encoder rung first) and ``blind`` (``encoder=False``:
every tile's 96 starts go through the full search, the case whose starts were once all
drawn up front) are cancelled after ``--steps`` optimiser steps (``default`` runs to the
end for the ``--complete`` sizes); ``minimal`` runs every stage of the default pipeline to
the end on one step each (eps 10, so every tile is at eps at once), so its peak includes
choosing, the seam refinement and the result (``--max-blocks K`` cancels it once K blocks
are done, for images too large to finish here; a job of more than 2048 tiles runs in
blocks, :mod:`napari_pulse.blocks`). Every tensor a stage holds for all tiles is
allocated when the stage starts, and a search stage draws its starts one chunk at a time,
so a cancelled run's peak is that of everything up to there. Printed per case: tiles,
resident memory before the call (imports and generator), its peak, the peak less the
before figure per tile, the pipeline's own estimate of a whole run with the default budget
(:mod:`napari_pulse.estimate`), what drawing every tile's starts up front would have held,
and the seconds taken.

    python bench/memory.py --threads 2 [--sizes 256 1024 4000] [--steps 40] [--complete 256]
        [--cases default blind minimal] [--max-blocks 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402


def field(size: int, seed: int = 0) -> np.ndarray:
    """Smoothed noise as uint8: blobs a few low-res pixels wide."""
    rng = np.random.default_rng(seed)
    x = rng.random((size + 8, size + 8), dtype=np.float32)
    for _ in range(3):  # a box blur, three times: close to a Gaussian
        x = (x[:-2] + x[1:-1] + x[2:]) / 3
        x = (x[:, :-2] + x[:, 1:-1] + x[:, 2:]) / 3
    x = x[1 : size + 1, 1 : size + 1]
    x = (x - x.min()) / (x.max() - x.min())
    return np.rint(x * 255).astype(np.uint8)


def rss_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


#: The cases: the search settings of each (fields of SearchConfig, and eps).
CASES = {
    "default": {},
    "blind": {"encoder": False},
    # Every stage to the end, each on one step (eps 10: every tile is at eps at once).
    "minimal": {"encoder_steps": 1, "encoder_patience": 0, "blend_steps": 1, "eps": 10.0},
}


def child(size: int, kind: str, steps: int | None, threads: int, max_blocks: int = 0) -> dict:
    import torch

    import napari_pulse
    from napari_pulse import blocks, estimate, pipeline
    from napari_pulse.options import Options
    from napari_pulse.search import SearchConfig

    torch.set_num_threads(threads)
    image = field(size)
    settings = dict(CASES[kind])
    eps = settings.pop("eps", 2e-3)
    opts = Options(generator="nuclei", factor=4, eps=eps, config=SearchConfig(**settings))
    setup = opts.resolve(rgb=False)
    before = rss_now()
    _, job = pipeline.prepare(image, False, setup)
    stages = pipeline.build(setup, job)
    parts = blocks.plan(job.grid, job.n_planes)
    at_once = blocks.BLOCK_UNITS if parts else None
    est = estimate.estimate(job, stages, rate=1.0, units_at_once=at_once)
    up_front = job.n_units * setup.cfg.restarts * estimate.start_bytes(job)
    del job, stages
    seen = {"steps": 0, "note": "", "blocks": 0, "stage": ""}

    def progress(event) -> None:
        seen["note"] = seen["note"] or event.note
        seen["steps"] += 1
        if seen["stage"] == "blend" and event.stage != "blend":
            seen["blocks"] += 1  # a block's seam refinement ended: the next block begins
        seen["stage"] = event.stage

    def stop() -> bool:
        if max_blocks and seen["blocks"] >= max_blocks:
            return True
        return steps is not None and seen["steps"] >= steps

    t = time.perf_counter()
    try:
        napari_pulse.upscale(
            image,
            options=opts,
            progress=progress,
            cancel=stop,
        )
        done = True
    except napari_pulse.events.Cancelled:
        done = False
    return {
        "tiles": est.units,
        "before": before,
        "peak": rss_peak(),
        "estimate": est.bytes,
        "up_front": up_front,
        "seconds": time.perf_counter() - t,
        "complete": done,
        "blocks_done": seen["blocks"],
        "note": seen["note"],
    }


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4000])
    p.add_argument("--steps", type=int, default=40, help="optimiser steps before cancelling")
    p.add_argument("--complete", type=int, nargs="*", default=[256], help="sizes run to the end")
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument(
        "--max-blocks",
        type=int,
        default=0,
        help="cancel the minimal case after this many blocks (0: run it to the end)",
    )
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        size, kind, steps = int(args.child[0]), args.child[1], int(args.child[2])
        blocks = args.max_blocks if kind == "minimal" else 0
        print(json.dumps(child(size, kind, steps if steps > 0 else None, args.threads, blocks)))
        return
    harness.begin(args)
    gib = 2**30
    for size in args.sizes:
        for kind in args.cases:
            # The full search of every tile from blind starts is hours long even at 256x256.
            whole = kind == "minimal" or (kind == "default" and size in args.complete)
            steps = 0 if whole else args.steps
            cmd = [sys.executable, __file__, "--threads", str(args.threads)]
            cmd += ["--max-blocks", str(args.max_blocks)]
            cmd += ["--child", str(size), kind, str(steps)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            harness.report(
                f"{size}x{size} x4, {kind}",
                tiles=r["tiles"],
                run=_run(r, args.steps),
                rss_before_GiB=r["before"] / gib,
                rss_peak_GiB=r["peak"] / gib,
                peak_less_before_KiB_per_tile=(r["peak"] - r["before"]) / r["tiles"] / 1024,
                estimate_GiB=r["estimate"] / gib,
                all_starts_up_front_GiB=r["up_front"] / gib,
                seconds=r["seconds"],
            )
            if r["note"]:
                print(f"  announced: {r['note']}")


def _run(r: dict, steps: int) -> str:
    if r["complete"]:
        return "to the end"
    if r["blocks_done"]:
        return f"cancelled after {r['blocks_done']} blocks"
    return f"cancelled after {steps} steps"


if __name__ == "__main__":
    main()
