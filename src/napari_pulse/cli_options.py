"""The search options on the command line: one set of arguments that ``upscale`` and
``evaluate`` share, and the one function that turns them into an :class:`Options`."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from . import guide
from .degrade import DEGRADATIONS
from .generators import default_for
from .intensity import NORMALIZATIONS
from .intermediate import MODES, IntermediateConfig
from .options import Options, starts_config
from .search import SearchConfig

DEFAULTS = SearchConfig()
DFLT = " (default: %(default)s)"


def _device(text: str) -> str:
    """argparse type for ``--device``: ``auto`` or anything ``torch.device`` accepts."""
    if text != "auto":
        try:
            torch.device(text)
        except RuntimeError as exc:
            raise argparse.ArgumentTypeError(f"not a device: {text!r} ({exc})") from exc
    return text


def add_search_arguments(p: argparse.ArgumentParser, samples: int = 1) -> None:
    """The arguments every command that upscales takes (``samples``: the default count)."""
    p.add_argument(
        "--degradation",
        choices=DEGRADATIONS,
        default="bicubic",
        help="how a high-res image becomes the low-res one: bicubic or area downscaling, or "
        "a Gaussian psf (needs --sigma)" + DFLT,
    )
    p.add_argument("--sigma", type=float, default=None, help="psf width in high-res pixels")
    p.add_argument(
        "--steps",
        type=int,
        default=DEFAULTS.steps,
        help="optimiser steps of each kept start (exploring, then refining)" + DFLT,
    )
    p.add_argument(
        "--restarts",
        type=int,
        default=DEFAULTS.restarts,
        help=f"random starts per tile; the best {DEFAULTS.keep} are refined" + DFLT,
    )
    p.add_argument(
        "--samples",
        type=int,
        default=samples,
        help="number of distinct results per image (at most --restarts)" + DFLT,
    )
    p.add_argument(
        "--seed", type=int, default=0, help="random seed; the same seed, the same result" + DFLT
    )
    p.add_argument(
        "--device",
        type=_device,
        default="auto",
        help="torch device: auto (cuda, then mps, then cpu; the default), cpu, cuda, cuda:1, mps",
    )
    p.add_argument(
        "--eps",
        type=float,
        default=DEFAULTS.eps,
        help="low-res MSE (in [0, 1] units) at or below which a tile counts as explained "
        "(2e-3 is about 27 dB)" + DFLT,
    )
    p.add_argument(
        "--overlap",
        type=int,
        default=None,
        help="low-res pixels by which neighbouring tiles overlap (default: 3/16 of a tile)",
    )
    _add_mode_arguments(p)
    _add_start_arguments(p)


def _add_mode_arguments(p: argparse.ArgumentParser) -> None:
    inter = IntermediateConfig()
    p.add_argument(
        "--mode",
        choices=MODES,
        default="latent",
        help="latent: search the generator's latent only (PULSE); intermediate: then shift "
        "its feature maps inside a ball, for images the latent cannot reach" + DFLT,
    )
    p.add_argument(
        "--radius",
        type=float,
        default=inter.radius,
        help="intermediate mode: how far feature maps may move, relative to their usual "
        "size" + DFLT,
    )
    p.add_argument(
        "--layers",
        type=int,
        nargs="+",
        default=None,
        help="intermediate mode: feature maps to search, 0 = the coarsest (default: 1 2)",
    )
    p.add_argument(
        "--feature-steps",
        type=int,
        default=inter.steps,
        help="intermediate mode: optimiser steps per feature map" + DFLT,
    )
    p.add_argument(
        "--realism",
        type=float,
        default=0.0,
        help="weight of a pull toward the generator's prior (feature offsets' size; "
        "extra GEOCROSS for per-layer latents)" + DFLT,
    )


def _add_start_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bank",
        type=int,
        default=DEFAULTS.bank,
        help="warm starts: each tile starts from its nearest of N prior draws, rendered once "
        "and cached; also reports how atypical the image is for the generator; 0 = off" + DFLT,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a quick first wave from the warm-start bank (--bank, {guide.QUICK_BANK} when "
        "not given); only tiles it leaves above eps get the full search",
    )
    p.add_argument(
        "--guide",
        action="store_true",
        help="guided starts: a small network fitted once on the warm-start bank (--bank, "
        f"{guide.RECOMMENDED_BANK} when not given) guesses each tile's latent, and the search "
        "starts from that guess and from ever more random directions around it",
    )


def add_upscale_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``upscale`` and ``batch``: the generator, the factor, the search
    (:func:`add_search_arguments`) and the normalization."""
    p.add_argument(
        "--generator",
        metavar="NAME",
        default=None,
        help=f"generator to search in, a name or a weights file (default: {default_for(1)} for "
        f"grayscale, {default_for(3)} for RGB); see 'napari-pulse generators'",
    )
    p.add_argument("--factor", type=int, default=4, help="upscaling factor, an integer >= 2" + DFLT)
    add_search_arguments(p)
    p.add_argument(
        "--normalization",
        choices=NORMALIZATIONS,
        default="auto",
        help="how intensities map to the generator's range (auto: the "
        "generator's own choice; the default)",
    )


def options_from_args(args: argparse.Namespace, **fixed: Any) -> Options:
    """The :class:`Options` of parsed arguments (``fixed`` sets fields the command decides)."""
    values = dict(
        generator=args.generator,
        factor=args.factor,
        degradation=args.degradation,
        sigma=args.sigma,
        steps=args.steps,
        restarts=args.restarts,
        samples=args.samples,
        seed=args.seed,
        device=args.device,
        eps=args.eps,
        overlap=args.overlap,
        mode=args.mode,
        intermediate=IntermediateConfig(
            layers=tuple(args.layers) if args.layers else None,
            radius=args.radius,
            steps=args.feature_steps,
        ),
        realism=args.realism,
        config=starts_config(args.bank, args.quick, args.guide),
    )
    if getattr(args, "normalization", None) is not None:
        values["normalization"] = args.normalization
    return Options(**{**values, **fixed})
