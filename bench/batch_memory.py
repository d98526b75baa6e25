"""A batch worker's peak memory on a large output: the stack's blocks kept on disk and its
zarr written a window at a time (this code), against a finish that blends the whole output
in memory (``--old SRC``: a source tree of an earlier version, e.g. from ``git archive``).

The input: the bundled 64x64 nuclei sample, as a stack of ``P`` planes (each plane rolled by
its index, so no two are equal), upscaled x4 with 4 samples by the tiny random generator
(``tiny``: the search is cheap, and the memory of the output does not depend on the
generator), steps 6, restarts 4; a stack this size has more than 2048 tiles x planes, so
its output goes to zarr. Each run is a new process with a local cluster of one worker
process (one torch thread); printed: wall seconds, the output's size, the worker's peak
resident memory (``ru_maxrss``) and, for a second version, whether the outputs are equal.

    python bench/batch_memory.py [--planes 24 96] [--old /tmp/old/src]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "src" / "napari_pulse" / "data" / "nuclei_lr.png"
KW = dict(generator="tiny", factor=4, samples=4, steps=6, restarts=4, seed=0)


def child(planes: int, folder: Path) -> dict:
    """One batch of a ``planes``-plane stack on a new local cluster of one worker."""
    import resource

    import tifffile
    from PIL import Image

    from napari_pulse.batch import batch
    from napari_pulse.batch.cluster import connect

    base = np.asarray(Image.open(SAMPLE).convert("L"))
    stack = np.stack([np.roll(base, (i, 2 * i), axis=(0, 1)) for i in range(planes)])
    path = folder / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")
    cluster = connect(None, 1)
    try:
        t0 = time.perf_counter()
        report = batch([path], folder / "out", client=cluster.client, **KW)
        seconds = time.perf_counter() - t0
        peaks = cluster.client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    finally:
        cluster.close()
    entry = report.entries[str(path)]
    out = folder / "out" / "stack.zarr"
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {
        "ok": report.ok,
        "error": entry.error,
        "blocks": entry.blocks,
        "seconds": seconds,
        "peak_mib": max(peaks.values()) / 1024,
        "output_mib": size / 2**20,
        "float32_output_mib": planes * KW["samples"] * (64 * 4) ** 2 * 4 / 2**20,
        "out": str(out),
    }


def run(planes: int, src: Path | None, folder: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if src is not None:
        env["PYTHONPATH"] = str(src)
    cmd = [sys.executable, __file__, "--child", str(planes), str(folder)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--planes", type=int, nargs="+", default=[24, 96])
    ap.add_argument("--old", type=Path, help="the source tree of an earlier version")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), Path(args.child[1]))))
        return
    import zarr

    versions = [("this", None)] + ([("old", args.old)] if args.old else [])
    print("version | planes | blocks | seconds | output float32 MiB | peak worker MiB | equal")
    with tempfile.TemporaryDirectory() as tmp:
        for planes in args.planes:
            first = None
            for name, src in versions:
                folder = Path(tmp) / f"{name}-{planes}"
                folder.mkdir()
                r = run(planes, src, folder)
                if not r["ok"]:
                    raise SystemExit(f"{name}, {planes} planes: {r['error']}")
                image = zarr.open_group(r["out"], mode="r")["image"][...]
                equal = "" if first is None else str(np.array_equal(image, first))
                first = image if first is None else first
                print(
                    f"{name} | {planes} | {r['blocks']} | {r['seconds']:.1f} | "
                    f"{r['float32_output_mib']:.0f} | {r['peak_mib']:.0f} | {equal}"
                )


if __name__ == "__main__":
    main()
