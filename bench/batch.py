"""Batch throughput: planes per minute of ``napari_pulse.batch`` on a local Dask cluster of
1 and 2 worker processes, against a plain loop of ``upscale`` calls, in one run.

The inputs: the central 128x128 region of each of the first ``--n`` held-out nuclei images
(``harness.heldout_nuclei``: the files the ``nuclei`` generator never read), bicubic x4 down
to a 32x32 uint8 field (9 tiles), one TIFF each, upscaled with the same options (the
defaults unless given) in every run: the loop in this process with one torch thread per
core; then batches, each on a new local cluster, of 1 worker with every core's thread,
1 worker with 1 thread, and 2 workers sharing the cores out. For each: wall seconds,
planes per minute and the ratio to the loop; for the batches also what a start and close
of the cluster take alone (their wall time includes one), and how the outputs compare
with the loop's (equal bit for bit, largest difference, share of pixels that differ:
outputs of another thread count differ by float rounding). Dask's overhead on one worker
is ``1 - loop wall / (1 worker, all threads) wall``; the scaling in workers is 2 workers
x 1 thread against 1 worker x 1 thread. ``--loop-twice`` also runs the loop again in a new
process and compares it with the first. ``--warm R`` then runs R rounds on one local
cluster of 1 worker with every core's threads, kept between rounds: in each, the loop and
then the batch, one after the other, so that the machine's drift falls on both alike; the
median of the rounds' ratios is Dask's overhead on a warm worker (no cluster start, the
worker's torch, generator and encoder already loaded).

    python bench/batch.py [--n 8] [--loop-twice] [--warm 3 [--only-warm]] [--steps ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image

import napari_pulse
from harness import begin, center_crop, describe, heldout_nuclei, options, parser, report
from napari_pulse.batch import batch
from napari_pulse.batch.cluster import connect, cores, local_size
from napari_pulse.degrade import downscale
from napari_pulse.imageio import read_image


def fields(n: int, folder: Path) -> list[Path]:
    """``n`` 32x32 low-res fields (x4 bicubic of held-out 128x128 regions) as TIFFs."""
    paths = []
    for source in heldout_nuclei()[:n]:
        a = np.asarray(Image.open(source).convert("L"), dtype=np.float32) / 255
        low = downscale(center_crop(a, 128), 4)
        path = folder / f"{source.stem}.tif"
        tifffile.imwrite(path, np.clip(np.rint(low * 255), 0, 255).astype(np.uint8))
        paths.append(path)
    return paths


def run_batch(
    paths: list[Path], out: Path, workers: int, threads: int, opts
) -> tuple[float, float, dict]:
    """Wall seconds (the cluster's start and close included), the seconds a start and
    close of such a cluster take on their own, and the outputs. ``threads`` below the
    default share (cores / workers) runs the batch on a cluster made here, whose workers
    keep the one thread Dask's nanny gives them."""
    t0 = time.perf_counter()
    connect(workers=workers).close()
    started = time.perf_counter() - t0
    t0 = time.perf_counter()
    if threads == local_size(workers)[1]:
        done = batch(paths, out, workers=workers, options=opts)
    else:
        assert threads == 1, "a cluster made here has one thread per worker"
        cluster = connect(workers=workers)
        try:
            done = batch(paths, out, client=cluster.client, options=opts)
        finally:
            cluster.close()
    wall = time.perf_counter() - t0
    assert done.ok, done.summary()
    return wall, started, {p.stem: tifffile.imread(out / f"{p.stem}.tif") for p in paths}


def warm_rounds(paths: list[Path], out: Path, opts, rounds: int) -> None:
    """The loop and a batch on one warm 1-worker cluster, in turn, ``rounds`` times."""
    cluster = connect(workers=1)
    try:
        cluster.client.run(torch.set_num_threads, cores())  # as a cluster made for a batch
        batch(paths[:1], out / "warm-up", client=cluster.client, options=opts)
        ratios = []
        for r in range(rounds):
            loop_wall, ref = loop(paths, opts)
            t0 = time.perf_counter()
            done = batch(paths, out / f"round{r}", client=cluster.client, options=opts)
            wall = time.perf_counter() - t0
            assert done.ok, done.summary()
            outs = {p.stem: tifffile.imread(out / f"round{r}" / f"{p.stem}.tif") for p in paths}
            ratios.append(wall / loop_wall)
            report(f"warm round {r + 1}", loop_s=loop_wall, batch_s=wall, **compare(outs, ref))
        report("Dask's overhead on a warm worker", median=f"{np.median(ratios) - 1:+.3f}")
    finally:
        cluster.close()


def loop(paths: list[Path], opts) -> tuple[float, dict[str, np.ndarray]]:
    """Wall seconds of a plain loop of ``upscale`` calls in this process, and the images."""
    t0 = time.perf_counter()
    images = {p.stem: napari_pulse.upscale(read_image(p), options=opts).image for p in paths}
    return time.perf_counter() - t0, images


def compare(outs: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, object]:
    """How many outputs equal the reference bit for bit; the largest difference (in the
    output's units) and the share of pixels that differ at all."""
    diffs = [np.abs(outs[k].astype(np.float64) - ref[k]) for k in ref]
    return {
        "equal_to_loop": f"{sum(not d.any() for d in diffs)}/{len(ref)}",
        "max_diff": max(float(d.max()) for d in diffs),
        "pixels_differing": float(np.mean([np.mean(d > 0) for d in diffs])),
    }


def main() -> None:
    p = parser(__doc__, n=8, generator="nuclei", factor=4, search=True)
    p.add_argument("--loop-twice", action="store_true", help="and the loop again in a new process")
    p.add_argument("--save", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--warm", type=int, default=0, help="rounds on one warm 1-worker cluster")
    p.add_argument("--only-warm", action="store_true", help="only the --warm rounds")
    args = p.parse_args()
    args.threads = cores()
    begin(args)
    opts = options(args)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = fields(args.n, tmp)
        if args.save is not None:  # the loop in a new process (for --loop-twice)
            np.savez(args.save, **loop(paths, opts)[1])
            return
        print(f"inputs: {len(paths)} held-out nuclei fields, 32x32 (9 tiles), x4, {describe(opts)}")
        if args.only_warm:
            warm_rounds(paths, tmp, opts, args.warm)
            return
        loop_wall, ref = loop(paths, opts)
        report(
            "loop",
            threads=torch.get_num_threads(),
            wall_s=loop_wall,
            planes_per_min=60 * len(paths) / loop_wall,
        )
        if args.loop_twice:
            again = tmp / "again.npz"
            argv = [a for a in sys.argv[1:] if a != "--loop-twice"]
            subprocess.run([sys.executable, __file__, *argv, "--save", str(again)], check=True)
            report("the loop again, in a new process", **compare(dict(np.load(again)), ref))
        walls = {}
        for workers, threads in ((1, cores()), (1, 1), (2, max(1, cores() // 2))):
            out = tmp / f"out{workers}x{threads}"
            wall, started, outs = run_batch(paths, out, workers, threads, opts)
            walls[workers, threads] = wall
            report(
                f"batch, {workers} worker(s) x {threads} thread(s)",
                wall_s=wall,
                cluster_start_and_close_s=started,
                planes_per_min=60 * len(paths) / wall,
                vs_loop=loop_wall / wall,
                **compare(outs, ref),
            )
        one, two = walls[1, 1], walls.get((2, 1))
        if two is not None:
            report("2 workers x 1 thread against 1 worker x 1 thread", speedup=one / two)
        if args.warm:
            warm_rounds(paths, tmp, opts, args.warm)


if __name__ == "__main__":
    main()
