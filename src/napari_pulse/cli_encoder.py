"""``napari-pulse train-encoder``: an encoder for a generator, factor and degradation."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from .cli_progress import with_bar
from .degrade import DEGRADATIONS
from .training.encoder import EncoderConfig

HELP = (
    "Train an encoder that guesses, from a low-res tile, the generator latent behind it, so "
    "that upscale starts every tile near its fit and refines it for a few steps instead of "
    "exploring from random starts. It is trained on the generator's own draws, then (with "
    "IMAGES_DIR) on real low-res crops of your images with the search's own objective (no "
    "high-res truth needed; the held-out share of the files is never read). Without --out "
    "it is written beside the generator's file (or in the cache directory), where upscale "
    "finds it for this generator, --factor and --degradation. A checkpoint beside it is "
    "written every --checkpoint-every steps; running the same command again resumes."
)
HELPS = {
    "draw_steps": "training steps on the generator's own draws",
    "real_steps": "training steps on real crops of IMAGES_DIR (with IMAGES_DIR)",
    "holdout": "share of the files never read (by a hash of the file name)",
    "normalization": "how images are brought to [0, 1] (default: the generator's own)",
    "latent_weight": "weight of the latent's cosine error on draws",
}
RUNG = {
    "rung_starts": "starts per tile",
    "rung_steps": "most steps per tile",
    "rung_patience": "steps without a 1%% gain after which a tile at eps leaves",
}
SKIP = {"generator", "factor", "degradation", "sigma", "images", "out", "normalization", *RUNG}


def add_train_encoder(sub: Any) -> None:
    """Register the ``train-encoder`` subcommand."""
    p = sub.add_parser(
        "train-encoder", help="train an encoder for faster upscales", description=HELP
    )
    p.add_argument("images", metavar="IMAGES_DIR", nargs="?", default=None)
    p.add_argument("--generator", metavar="NAME", required=True, help="a name or a weights file")
    p.add_argument("--factor", type=int, required=True, help="the factor it is for")
    p.add_argument("--degradation", choices=DEGRADATIONS, default="bicubic")
    p.add_argument("--sigma", type=float, default=None, help="psf width (with psf)")
    p.add_argument("--out", default=None, help="the encoder file (.safetensors)")
    p.add_argument("--normalization", default=None, help=HELPS["normalization"])
    defaults = EncoderConfig(generator="")
    for f in fields(EncoderConfig):
        if f.name in SKIP:
            continue
        value = getattr(defaults, f.name)
        p.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(value),
            default=value,
            help=f"{HELPS.get(f.name, f.name.replace('_', ' '))} (default: {value})",
        )
    for name, what in RUNG.items():
        p.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=None,
            help=f"the encoder rung's {what} that upscale uses with this encoder, kept in its "
            "card (default: the search's own)",
        )
    p.add_argument("--quiet", action="store_true", help="a log line per checkpoint, no bar")
    p.set_defaults(func=run_train_encoder)


def run_train_encoder(args: argparse.Namespace) -> int:
    from .training.encoder import train_encoder

    cfg = EncoderConfig(**{f.name: getattr(args, f.name) for f in fields(EncoderConfig)})
    if cfg.out is not None and not cfg.out.endswith(".safetensors"):
        raise ValueError(f"--out must end in .safetensors, got {cfg.out}")
    if cfg.factor < 2:
        raise ValueError(f"--factor must be at least 2, got {cfg.factor}")
    for name in RUNG:
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    out = with_bar(
        lambda show: train_encoder(cfg, show),
        cfg.steps,
        args.quiet,
        cfg.checkpoint_every,
        lambda e: (
            f"{e.phase} step {e.step}/{e.steps} loss {e.loss:.4f} "
            f"lr_psnr {e.lr_psnr:.1f} dB, {e.seconds:.0f} s"
        ),
        lambda e: {"loss": f"{e.loss:.4f}", "lr_psnr": f"{e.lr_psnr:.1f}"},
        phase=lambda e: e.phase,
    )
    print(f"wrote {out}")
    return 0
