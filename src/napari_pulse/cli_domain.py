"""``napari-pulse fit-domain`` and ``fit-error-map``: the models kept beside a generator
that flag foreign images and map where a result is likely wrong."""

from __future__ import annotations

import argparse
from types import SimpleNamespace
from typing import Any

from .cli_progress import with_bar
from .degrade import DEGRADATIONS

HELP = (
    "Fit the model that tells, before any search, whether an input looks like this "
    "generator's training images (upscale then sets result.in_domain, and warns when an "
    "image is foreign). It describes the low-res tiles of random regions of IMAGES_DIR's "
    "training files (the held-out share is never read) at --factor and --degradation; "
    "half the files give the reference tiles, half set the cut (97.5% of their fields "
    "pass). Without --out it is written beside the generator's file (or in the cache "
    "directory), where upscale finds it. Seconds for a few hundred files."
)


def add_fit_domain(sub: Any) -> None:
    """Register the ``fit-domain`` subcommand."""
    p = sub.add_parser(
        "fit-domain", help="fit the foreign-image flag for a generator", description=HELP
    )
    _kept_arguments(p, ".safetensors")
    p.add_argument("--crops", type=int, default=2, help="random regions per file (default: 2)")
    p.set_defaults(func=run_fit_domain)


def _kept_arguments(p: argparse.ArgumentParser, suffix: str) -> None:
    """What every model kept beside a generator is fitted from and written to."""
    p.add_argument("images", metavar="IMAGES_DIR")
    p.add_argument("--generator", metavar="NAME", required=True, help="a name or a weights file")
    p.add_argument("--factor", type=int, required=True, help="the factor it is for")
    p.add_argument("--degradation", choices=DEGRADATIONS, default="bicubic")
    p.add_argument("--sigma", type=float, default=None, help="psf width (with psf)")
    p.add_argument("--holdout", type=float, default=0.1, help="share of the files never read")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help=f"the model file ({suffix})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(suffix=suffix)


def _check(args: argparse.Namespace) -> None:
    """Refuse what :func:`_kept_arguments` and ``--crops`` cannot take."""
    if args.out is not None and not args.out.endswith(args.suffix):
        raise ValueError(f"--out must end in {args.suffix}, got {args.out}")
    if args.factor < 2:
        raise ValueError(f"--factor must be at least 2, got {args.factor}")
    if args.crops < 1:
        raise ValueError(f"--crops must be at least 1, got {args.crops}")


def run_fit_domain(args: argparse.Namespace) -> int:
    from . import domain
    from .training.data import list_images
    from .training.domain import fit_domain

    _check(args)

    def work(show):
        return fit_domain(
            args.images, args.generator, args.factor, args.degradation, args.sigma,
            holdout=args.holdout, crops=args.crops, seed=args.seed, out=args.out,
            on_file=lambda done, total: show(SimpleNamespace(step=done, total=total)),
        )  # fmt: skip

    files = len(list_images(args.images, args.holdout, "train"))
    path = with_bar(
        work, files, args.quiet, max(1, files), lambda e: f"{e.step} files", lambda e: {}
    )
    model = domain.load(path)
    print(f"wrote {path} ({len(model.reference)} reference tiles, cut {model.cut:.3f})")
    return 0


ERROR_HELP = (
    "Fit the expected-error model of a generator (upscale then sets result.error and writes "
    "OUT_error.tif: where the result is most likely wrong, as an RMS error estimate). "
    "One region of two generator images a side from each of --crops of IMAGES_DIR's "
    "training files (the held-out share is never read) is downscaled with --factor and "
    "--degradation, upscaled with the defaults (or --steps and --restarts), and the model's "
    "three weights are fitted to the error against the original. Without --out it is "
    "written beside the generator's file (or in the cache directory), where upscale finds "
    "it. As long as --crops upscales (about 20 minutes for 20 on a 2-core CPU with an "
    "encoder; longer without one)."
)


def add_fit_error_map(sub: Any) -> None:
    """Register the ``fit-error-map`` subcommand."""
    p = sub.add_parser(
        "fit-error-map", help="fit the expected-error map for a generator", description=ERROR_HELP
    )
    _kept_arguments(p, ".json")
    p.add_argument("--crops", type=int, default=20, help="regions upscaled (default: 20)")
    p.add_argument("--steps", type=int, default=None, help="search steps (default: upscale's)")
    p.add_argument("--restarts", type=int, default=None, help="starts (default: upscale's)")
    p.set_defaults(func=run_fit_error_map)


def run_fit_error_map(args: argparse.Namespace) -> int:
    from . import error_map
    from .training.error_map import fit_error_map

    _check(args)
    search = {k: getattr(args, k) for k in ("steps", "restarts") if getattr(args, k) is not None}

    def work(show):
        return fit_error_map(
            args.images, args.generator, args.factor, args.degradation, args.sigma,
            holdout=args.holdout, crops=args.crops, seed=args.seed, out=args.out,
            on_crop=lambda done, total: show(SimpleNamespace(step=done, total=total)),
            **search,
        )  # fmt: skip

    path = with_bar(work, args.crops, args.quiet, 1, lambda e: f"{e.step} crops", lambda e: {})
    model = error_map.load(path)
    fit = model.card["fit"]
    print(
        f"wrote {path} (rank correlation {fit['spearman_median']:.3f} with the error of the "
        f"crops it was fitted on; RMS {fit['predicted_rms_median']:.4f} expected, "
        f"{fit['actual_rms_median']:.4f} actual)"
    )
    return 0
