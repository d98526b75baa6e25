"""napari-pulse's cache directory: downloaded checkpoints and mapping-network Gaussian fits.

The directory is ``$NAPARI_PULSE_CACHE`` when set, else the user's cache directory
(``platformdirs.user_cache_dir("napari-pulse")``, e.g. ``~/.cache/napari-pulse``). A Gaussian
fit is keyed by the sha256 of the weights file it was computed from, so a changed file gets
a new fit and an unchanged one is fitted once.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from platformdirs import user_cache_dir
from safetensors.torch import load_file, save_file

from . import stylegan2

ENV_VAR = "NAPARI_PULSE_CACHE"
#: Samples and batch size of a cached fit (the fit is deterministic: seed 0).
FIT_SAMPLES = 100_000
FIT_BATCH = 10_000


def cache_dir() -> Path:
    """The cache directory (not created here)."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path(user_cache_dir("napari-pulse"))


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def gaussian_path(sha256: str) -> Path:
    return cache_dir() / "gaussian" / f"{sha256}-n{FIT_SAMPLES}.safetensors"


def cached_gaussian(net: stylegan2.StyleGAN2, sha256: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The mapping network's Gaussian fit for weights with this hash: from the cache, or
    computed in batches once and stored there."""
    path = gaussian_path(sha256)
    if path.is_file():
        try:
            t = load_file(str(path))
            mean, std = t["mean"], t["std"]
            if mean.shape == std.shape == (net.config.style_dim,):
                return mean, std
        except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
            pass
    mean, std = stylegan2.gaussian_fit(net, n=FIT_SAMPLES, batch=FIT_BATCH)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
        save_file({"mean": mean.contiguous(), "std": std.contiguous()}, str(tmp))
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache costs a refit next time, nothing more
    return mean, std
