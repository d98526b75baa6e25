"""``napari-pulse evaluate``: degrade a folder of high-res images, upscale back, report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .cli_options import DFLT, add_search_arguments, options_from_args

EVALUATE_HELP = (
    "For each high-res image in HR_DIR (TIFF/PNG/JPEG; center-cropped to a multiple of "
    "--factor), make its low-res version with --degradation (quantised to 8 bits for 8-bit "
    "files, 16 bits otherwise), upscale it, and compare with the original in [0, 1] (the "
    "generator's intensity convention): success (low-res MSE <= eps), lr_psnr, PSNR and SSIM "
    "for bicubic upsampling, one sample and the mean of the samples, the samples' mean "
    "spread, and (where the generator has an error model) how well the expected-error map "
    "ranks and sizes the actual error. Writes OUT/evaluation.csv (a row per image and a "
    "summary row: the share of successes, medians of the rest) and OUT/evaluation.png "
    "(rows of low-res / bicubic / ours / truth / spread / expected error)."
)


def add_evaluate(sub: Any) -> None:
    """Register the ``evaluate`` subcommand on an argparse subparsers object."""
    p = sub.add_parser(
        "evaluate", help="evaluate a generator on a folder of images", description=EVALUATE_HELP
    )
    p.add_argument("hr_dir", metavar="HR_DIR", type=Path, help="folder of high-res images")
    p.add_argument("--generator", metavar="NAME", required=True, help="generator to evaluate")
    p.add_argument("--factor", type=int, required=True, help="upscaling factor, an integer >= 2")
    add_search_arguments(p, samples=4)
    p.add_argument(
        "--limit", type=int, default=None, help="evaluate N images, chosen by --seed over names"
    )
    p.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder" + DFLT)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs in OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, write_csv, write_figure

    options = options_from_args(args)
    outs = [args.out / "evaluation.csv", args.out / "evaluation.png"]
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out must be a folder: {args.out}")
    for out in outs:
        if out.exists() and not args.overwrite:
            raise ValueError(f"{out} exists; pass --overwrite to replace it")
    bar = tqdm(total=None, unit="image", disable=args.quiet, file=sys.stderr, desc="evaluate")

    def show(done: int, total: int, name: str) -> None:
        bar.total = total
        bar.set_postfix_str(name, refresh=False)
        bar.update(done - bar.n)

    with bar:
        ev = evaluate(args.hr_dir, options=options, limit=args.limit, progress=show)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(ev, outs[0])
    write_figure(ev, outs[1])
    if not args.quiet:
        s = ev.summary
        print(
            f"{len(ev.images)} images: success {s['success']:.0%}, median lr_psnr "
            f"{s['lr_psnr']:.1f} dB; median PSNR bicubic / sample / mean "
            f"{s['psnr_bicubic']:.2f} / {s['psnr_sample']:.2f} / {s['psnr_mean']:.2f} dB; "
            f"SSIM {s['ssim_bicubic']:.3f} / {s['ssim_sample']:.3f} / {s['ssim_mean']:.3f}; "
            f"spread {s['spread']:.4f}"
        )
        if s["expected_error_spearman"] == s["expected_error_spearman"]:  # not NaN
            print(
                f"expected error: rank correlation {s['expected_error_spearman']:.3f} with the "
                f"actual error; RMS {s['expected_error_rms']:.4f} expected, "
                f"{s['error_rms']:.4f} actual"
            )
        print(f"wrote {outs[0]} and {outs[1]}")
    return 0
