"""``napari-pulse batch``: many images upscaled on a Dask cluster (:mod:`napari_pulse.batch`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .cli_options import add_upscale_arguments, options_from_args
from .events import BatchProgress

HELP = (
    "Upscale every input (files, globs, folders of TIFF/PNG/JPEG, multi-page TIFF stacks, "
    "zarr and OME-Zarr arrays) into OUTDIR: OUTDIR/<input stem>.tif with the metadata and "
    "companions 'upscale' writes, or OUTDIR/<input stem>.zarr for zarr inputs and inputs "
    "of more than 2048 tiles x planes. The pixels are those 'upscale' gives on each input with "
    "the same options and torch threads. Runs on a local Dask cluster sized for this "
    "machine, or on the cluster at --scheduler. Outputs are written atomically; a rerun "
    "skips complete outputs; a failing input is reported and the others go on; "
    "OUTDIR/batch-report.json says what happened to each input. Exit code 0: every input "
    "done or skipped; 1: some failed; 2: a bad command line; 130: interrupted."
)


def add_batch(sub: Any) -> None:
    """Register the ``batch`` subcommand."""
    p = sub.add_parser("batch", help="upscale many images on a Dask cluster", description=HELP)
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="files, globs or folders")
    p.add_argument("-o", "--outdir", metavar="OUTDIR", type=Path, required=True)
    add_upscale_arguments(p)
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="a Dask scheduler's address (default: $NAPARI_PULSE_SCHEDULER; without either, "
        "a local cluster of one worker process per core)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes of the local cluster (default: one per core; the cores are "
        "shared out among them as torch threads)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs from other inputs or options (complete outputs of the same "
        "input and options are always skipped)",
    )
    p.add_argument("--quiet", action="store_true", help="no bar; failures and summary still shown")
    p.set_defaults(func=run_batch)


def run_batch(args: argparse.Namespace) -> int:
    from .batch import batch

    options = options_from_args(args)
    bars: list[tqdm] = []  # made when the tasks start: nothing is shown for a refused command

    def say(line: str) -> None:
        (bars[0].write if bars else print)(f"napari-pulse: {line}", file=sys.stderr)

    def show(event: BatchProgress) -> None:
        if event.status == "failed":
            say(f"failed: {event.input}: {event.message}")
        if event.status is None and event.message:  # where the batch runs: the tasks start
            say(event.message)
        if not bars and (event.status is None or event.done):
            bars.append(tqdm(unit="task", desc="batch", file=sys.stderr, disable=args.quiet))
        if not bars:
            return
        bar = bars[0]
        bar.total = event.total
        bar.set_postfix_str(
            f"{event.planes} planes, {event.planes_per_minute:.1f} planes/min", refresh=False
        )
        bar.update(event.done - bar.n)

    try:
        report = batch(
            args.inputs,
            args.outdir,
            options=options,
            scheduler=args.scheduler,
            workers=args.workers,
            overwrite=args.overwrite,
            progress=show,
        )
    except KeyboardInterrupt:
        print(
            "\nnapari-pulse: interrupted; finished outputs are kept (an unfinished one is only "
            "ever under a temporary name, removed by the next run): run the same command again "
            "to do the rest",
            file=sys.stderr,
        )
        return 130
    finally:
        for bar in bars:
            bar.close()
    unexplained = [e for e in report.entries.values() if e.success is False]
    foreign = [e for e in report.entries.values() if e.in_domain is False]
    print(f"{report.summary()}; report: {report.outdir / 'batch-report.json'}")
    if unexplained:
        print(
            f"napari-pulse: warning: {len(unexplained)} input(s) the generator could not "
            "explain (success false; their detail is unreliable): see the report",
            file=sys.stderr,
        )
    if foreign:
        print(
            f"napari-pulse: warning: {len(foreign)} input(s) look unlike the generator's "
            "training images (in_domain false; what it adds is a guess from another kind of "
            f"sample): {', '.join(Path(e.input).name for e in foreign[:5])}"
            + (", ..." if len(foreign) > 5 else ""),
            file=sys.stderr,
        )
    return 0 if report.ok else 1
