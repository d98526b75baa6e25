"""``napari-pulse train``: train a StyleGAN2 domain generator from a folder of images."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from .cli_progress import with_bar
from .training.loop import TrainConfig

TRAIN_HELP = (
    "Train a StyleGAN2 generator on random crops (native pixel size) of the TIFF/PNG images "
    "in IMAGES_DIR and write it, with its model card, to OUT (.safetensors). A checkpoint "
    "beside OUT (<stem>.ckpt.pt) is written every --checkpoint-every steps; running the "
    "same command again resumes from it. Sample grids go to <stem>.samples/."
)

#: Help for the options whose name and default do not say enough.
HELPS = {
    "normalization": "percentile (fluorescence), range (the dtype's range: keeps stain "
    "colours) or minmax; upscale normalises inputs the same way",
    "crop_level": "a crop is kept when --crop-min-fraction of its pixels are past this level",
    "crop_dark": "count pixels darker than --crop-level (stained cells on a bright field) "
    "instead of brighter ones (fluorescence)",
    "crop_any_share": "share of crops kept whatever they hold",
    "holdout": "share of the files held out for evaluation (by a hash of the file name)",
    "diffaugment": "differentiable augmentation of real and generated images (small data sets)",
}


def _widths(text: str) -> dict[int, int]:
    """``"4:128,8:128,16:64"`` to ``{4: 128, 8: 128, 16: 64}``."""
    try:
        pairs = [item.split(":") for item in text.split(",") if item.strip()]
        return {int(r): int(c) for r, c in pairs}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"widths look like 4:128,8:128,16:64 ({exc})") from exc


def add_train(sub: Any) -> None:
    """Register the ``train`` subcommand on an argparse subparsers object."""
    p = sub.add_parser(
        "train", help="train a generator from a folder of images", description=TRAIN_HELP
    )
    p.add_argument("images", metavar="IMAGES_DIR")
    p.add_argument("--out", required=True, help="output .safetensors file")
    defaults = TrainConfig(images="", out="")
    skip = {"images", "out", "widths"}
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        value = getattr(defaults, f.name)
        kind = type(value) if value is not None else float
        if kind is bool:
            p.add_argument(
                f"--{f.name.replace('_', '-')}",
                action=argparse.BooleanOptionalAction,
                default=value,
                help=f"{HELPS.get(f.name, f.name.replace('_', ' '))} (default: {value})",
            )
        else:
            hint = f"{HELPS[f.name]} " if f.name in HELPS else ""
            p.add_argument(
                f"--{f.name.replace('_', '-')}",
                type=kind,
                default=value,
                help=f"{hint}(default: {value})",
            )
    p.add_argument(
        "--widths",
        type=_widths,
        default=defaults.widths,
        help="feature widths per resolution, e.g. 4:128,8:128,16:64,32:32,64:16",
    )
    p.add_argument("--quiet", action="store_true", help="a log line per checkpoint, no bar")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from .training.loop import train

    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    cfg = TrainConfig(**values)
    if not cfg.out.endswith(".safetensors"):
        raise ValueError(f"--out must end in .safetensors, got {cfg.out}")
    out = with_bar(
        lambda show: train(cfg, show),
        cfg.steps,
        args.quiet,
        args.checkpoint_every,
        lambda e: (
            f"step {e.step}/{e.steps} d={e.d_loss:.3f} g={e.g_loss:.3f} "
            f"r1={e.r1:.4f} {e.images_per_s:.1f} img/s"
        ),
        lambda e: {
            "d": f"{e.d_loss:.3f}",
            "g": f"{e.g_loss:.3f}",
            "img_s": f"{e.images_per_s:.1f}",
        },
        mininterval=5,
    )
    print(f"wrote {out}")
    _fit_domains(cfg, out)
    return 0


#: Factors the foreign-image flag is fitted for after training (where the low-res tile is
#: at least 8 pixels): a few seconds each (``napari-pulse fit-domain`` makes others).
DOMAIN_FACTORS = (2, 4, 8)


def _fit_domains(cfg: TrainConfig, out) -> None:
    """Fit the foreign-image flag (:mod:`napari_pulse.domain`) beside the new generator,
    from the same training files, so that its results say whether an input is of its kind."""
    from .training.domain import fit_domain

    for factor in (f for f in DOMAIN_FACTORS if cfg.resolution // f >= 8):
        try:
            path = fit_domain(cfg.images, str(out), factor, holdout=cfg.holdout)
        except (ValueError, OSError) as exc:  # e.g. images too small for the regions: the
            # generator is written either way, only its flag at this factor is missing
            print(f"no foreign-image flag at x{factor}: {exc}")
            continue
        print(f"wrote {path} (the foreign-image flag at x{factor})")
