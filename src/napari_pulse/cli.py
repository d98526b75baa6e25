"""The ``napari-pulse`` command line: ``upscale`` an image file, list ``generators``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from . import __version__, guide
from .api import upscale
from .cli_batch import add_batch
from .cli_domain import add_fit_domain, add_fit_error_map
from .cli_encoder import add_train_encoder
from .cli_evaluate import add_evaluate
from .cli_options import add_upscale_arguments, options_from_args
from .cli_train import add_train
from .events import Progress
from .generators import available
from .generators.files import FORMATS_HELP
from .imageio import TIFF_SUFFIXES, read_image
from .options import Options
from .result import Result
from .writing import CAVEAT, companion_kinds, tiff_outputs, write_tiffs

#: Bank sizes that ``--quick`` and ``--guide`` use when ``--bank`` is not given.
QUICK_BANK = guide.QUICK_BANK
GUIDE_BANK = guide.RECOMMENDED_BANK

PROG = "napari-pulse"
DESCRIPTION = "Upscale images by PULSE-style latent search in a pretrained generator. " + CAVEAT
UPSCALE_HELP = (
    "Upscale IN by --factor and write OUT as a TIFF whose ImageDescription holds the "
    "parameters and fit quality as JSON. A warning is printed when the generator could "
    "not explain the image (low-res error above eps); the result is still written. " + CAVEAT
)


class UsageError(ValueError):
    """A bad command line (paths, suffixes): reported like any other input error."""


def _add_upscale(sub: Any) -> None:
    p = sub.add_parser(
        "upscale",
        help="upscale an image file (TIFF, PNG or JPEG) to a TIFF",
        description=UPSCALE_HELP,
    )
    p.add_argument(
        "input",
        metavar="IN",
        type=Path,
        help="input image: .tif/.tiff (8/16-bit, float, stacks), .png or .jpg; "
        "(Y, X) grayscale or (Y, X, 3) RGB",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        type=Path,
        required=True,
        help="output .tif/.tiff; never the input file; with --samples N > 1 also "
        "OUT_samples.tif and OUT_std.tif (the local spread: where detail was invented); "
        "where the generator has an error model, OUT_error.tif (the expected error of OUT: "
        "where it is most likely wrong)",
    )
    add_upscale_arguments(p)
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar and no summary (warnings and errors still shown)",
    )
    p.set_defaults(func=_run_upscale)


def build_parser() -> argparse.ArgumentParser:
    """The ``napari-pulse`` argument parser."""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_upscale(sub)
    gens = sub.add_parser(
        "generators",
        help="list the generators and whether they can be used here",
        description="List every known generator (bundled, from installed packages under the "
        "entry-point group napari_pulse.generators, and published ones) with its summary and "
        "whether it is usable here, without loading any weights. --generator also takes a "
        f"path to a generator file: {FORMATS_HELP}.",
    )
    gens.set_defaults(func=_run_generators)
    add_train(sub)
    add_train_encoder(sub)
    add_fit_domain(sub)
    add_fit_error_map(sub)
    add_evaluate(sub)
    add_batch(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2: bad input, 130: interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    log, quiet = logging.getLogger("napari_pulse"), logging.NullHandler()
    log.addHandler(quiet)  # notes such as a large job's size come through the progress bar
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted; no partial file was left", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        log.removeHandler(quiet)


def _run_generators(args: argparse.Namespace) -> int:
    infos = available()
    width = max((len(info.name) for info in infos), default=0)
    for info in infos:
        reason = info.reason
        status = "ok" if reason is None else f"unavailable: {reason}"
        print(f"{info.name:<{width}}  {info.summary}  [{status}]")
    return 0


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


def _check_paths(args: argparse.Namespace, options: Options) -> list[Path]:
    if args.output.suffix.lower() not in TIFF_SUFFIXES:
        name = args.output.name
        raise UsageError(f"OUT must end in .tif or .tiff (results are TIFF), got {name!r}")
    if not args.input.exists():
        raise FileNotFoundError(f"input file not found: {args.input}")
    outs = tiff_outputs(args.output, companion_kinds(options))
    for out in outs:
        if _same_file(out, args.input):
            raise UsageError(f"refusing to write {out}: it is the input file")
        if out.exists() and not args.overwrite:
            raise UsageError(f"{out} exists; pass --overwrite to replace it")
    if not args.output.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {args.output.parent}")
    return outs


def _progress_bar(quiet: bool) -> tuple[tqdm, Callable[[Progress], None]]:
    bar = tqdm(
        total=None, file=sys.stderr, disable=quiet, unit="step", desc="upscale", dynamic_ncols=True
    )

    def update(event: Progress) -> None:
        if event.note:
            bar.write(f"{PROG}: {event.note}", file=sys.stderr)
        if bar.total != event.total:
            bar.total = event.total
        bar.set_description_str(event.stage, refresh=False)
        bar.set_postfix_str(
            f"batch {event.batch}/{event.batches}, worst tile mse {event.best_mse:.2e}",
            refresh=False,
        )
        bar.update(event.done - bar.n)

    return bar, update


def _run_upscale(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    outs = _check_paths(args, options)
    image = read_image(args.input)
    start = time.perf_counter()
    bar, update = _progress_bar(args.quiet)
    with bar:
        result = upscale(image, options=options, progress=update)
    written = write_tiffs(result, args.input, outs)
    elapsed = time.perf_counter() - start
    if not args.quiet:
        print(
            f"{outs[0]}: {result.image.shape} {result.image.dtype}, "
            f"lr_psnr {result.lr_psnr:.2f} dB, success {result.success}, {elapsed:.1f} s"
        )
        if result.error is not None:
            print(expected_error_line(result, written[-1]))
    if not result.success:
        print(
            f"{PROG}: warning: generator {result.params.get('generator')!r} could not explain "
            f"this image (low-res MSE {result.lr_mse:.2e} > eps {result.params.get('eps')}); "
            "the result was written but its detail is unreliable",
            file=sys.stderr,
        )
    for message in result.warnings():
        print(f"{PROG}: warning: {message}", file=sys.stderr)
    if result.params.get("encoder") is None and not args.quiet:
        print(no_encoder_hint(result.params), file=sys.stderr)
    return 0


def expected_error_line(result: Result, where: Path) -> str:
    """The expected error's RMS, in the image's units and as a share of its intensity
    range, and the file that maps it."""
    rms, share = result.expected_rms()
    return (
        f"expected error: RMS {rms:.4g} ({share:.1%} of the intensity range), "
        f"largest where {where.name} is bright"
    )


def no_encoder_hint(params: dict[str, Any]) -> str:
    """Where no encoder exists for the generator and factor: how to make one."""
    return (
        f"{PROG}: note: no encoder for generator {params['generator']!r} at x{params['factor']} "
        f"({params['degradation']}), so every tile was searched from random starts; "
        f"'{PROG} train-encoder IMAGES_DIR --generator {params['generator']} --factor "
        f"{params['factor']}' makes one and later upscales much faster"
    )


if __name__ == "__main__":
    raise SystemExit(main())
