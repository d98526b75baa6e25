"""Reader for rosinality/stylegan2-pytorch checkpoints (``.pt``).

The file is read with ``torch.load(..., weights_only=True)``; training checkpoints, which
also hold an argparse ``Namespace`` under ``"args"``, load the same way with that one class
allowed as plain data. The generator is ``g_ema`` (or the file is a bare generator state
dict). Size, style_dim, n_mlp, widths and image channels are inferred from key names and
shapes, so narrow and grayscale variants load too; rosinality's own widths are
``{4..32: 512, 64: 256*cm, 128: 128*cm, ...}`` for a channel multiplier ``cm``. Our
:class:`StyleGAN2` uses rosinality's parameter names; only its (constant) blur kernels are
dropped. The mapping's learning-rate multiplier is not stored: rosinality's 0.01 is assumed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from . import cache
from .base import ModelCard
from .safe_pickle import torch_load
from .stylegan2 import StyleGAN2, StyleGAN2Config, StyleGAN2Generator, make_kernel

#: rosinality's widths for channel multiplier 1 (resolutions >= 64 scale with the multiplier)
ROSINALITY_WIDTHS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32}
ROSINALITY_WIDTHS[1024] = 16
_BLUR_KEY = re.compile(r"^(convs\.\d+\.conv\.blur|to_rgbs\.\d+\.upsample)\.kernel$")


def is_rosinality(obj: Any) -> bool:
    """Whether a loaded ``.pt`` object looks like a rosinality checkpoint or generator."""
    if isinstance(obj, dict) and isinstance(obj.get("g_ema"), dict):
        return True
    return isinstance(obj, dict) and "style.1.weight" in obj and "input.input" in obj


def generator_state(obj: Any) -> dict[str, torch.Tensor]:
    """The generator's state dict: ``g_ema`` of a checkpoint, or the object itself."""
    if not is_rosinality(obj):
        keys = ", ".join(sorted(map(str, obj))[:8]) if isinstance(obj, dict) else type(obj)
        raise ValueError(
            f"not a rosinality/stylegan2-pytorch checkpoint (no 'g_ema', no 'style.1.weight'; "
            f"found: {keys})"
        )
    return obj["g_ema"] if "g_ema" in obj else obj


def _count(state: dict, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted(int(m.group(1)) for k in state if (m := rx.match(k)))


def infer_config(state: dict[str, torch.Tensor], lr_mlp: float = 0.01) -> StyleGAN2Config:
    """A :class:`StyleGAN2Config` that fits this state dict's keys and shapes."""
    mlp = _count(state, r"^style\.(\d+)\.weight$")
    if mlp != list(range(1, len(mlp) + 1)) or not mlp:
        raise ValueError(f"unexpected mapping layers style.{mlp}.weight")
    n_rgbs = len(_count(state, r"^to_rgbs\.(\d+)\.bias$"))
    resolution = 2 ** (n_rgbs + 2)
    widths = {4: int(state["input.input"].shape[1])}
    for j in range(n_rgbs):
        widths[2 ** (j + 3)] = int(state[f"convs.{2 * j}.conv.weight"].shape[1])
    expected = make_kernel((1, 3, 3, 1)) * 4  # both stored kernels are x2-upsampling ones
    for key in [k for k in state if _BLUR_KEY.match(k)]:
        if not (state[key].shape == expected.shape and torch.allclose(state[key], expected)):
            raise ValueError(f"{key} is not the [1, 3, 3, 1] kernel; only that one is supported")
    return StyleGAN2Config(
        resolution=resolution,
        channels=int(state["to_rgb1.conv.weight"].shape[1]),
        style_dim=int(state["style.1.weight"].shape[1]),
        n_mlp=len(mlp),
        widths=widths,
        lr_mlp=lr_mlp,
    )


def channel_multiplier(widths: dict[int, int]) -> int | None:
    """Rosinality's channel multiplier when the widths follow its table, else None."""
    if widths.get(64, 0) < 256 or widths[64] % 256:
        return None
    cm = widths[64] // 256
    expected = {r: w * (cm if r >= 64 else 1) for r, w in ROSINALITY_WIDTHS.items()}
    return cm if all(expected.get(r) == w for r, w in widths.items()) else None


def convert_state(state: dict[str, torch.Tensor], config: StyleGAN2Config) -> dict:
    """Our :class:`StyleGAN2` state dict from rosinality's (same names, blur kernels dropped)."""
    out = {k: v.float() for k, v in state.items() if not _BLUR_KEY.match(k)}
    gen = torch.Generator().manual_seed(0)
    for i in range(2 * config.log_size - 3):  # old checkpoints lack noise buffers: fixed ones
        res = 2 ** ((i + 5) // 2)
        out.setdefault(f"noises.noise_{i}", torch.randn(1, 1, res, res, generator=gen))
    return out


def load_rosinality(
    path: str | Path, layout: str = "w+", checkpoint: Any = None, lr_mlp: float = 0.01
) -> StyleGAN2Generator:
    """A search-ready generator from a rosinality ``.pt`` file (``checkpoint``: already loaded)."""
    path = Path(path)
    obj = torch_load(path) if checkpoint is None else checkpoint
    state = generator_state(obj)
    try:
        config = infer_config(state, lr_mlp=lr_mlp)
    except KeyError as exc:
        raise ValueError(f"{path.name}: not a complete StyleGAN2 generator (no {exc})") from None
    net = StyleGAN2(config)
    try:
        net.load_state_dict(convert_state(state, config), strict=True)
    except RuntimeError as exc:
        msg = f"{path.name}: the weights do not fit the inferred StyleGAN2: {exc}"
        raise ValueError(msg) from None
    net.eval().requires_grad_(False)
    sha = cache.file_sha256(path)
    cm = channel_multiplier(config.widths)
    res = config.resolution
    card = ModelCard(
        name=path.stem,
        description=f"StyleGAN2 {res}x{res} read from {path.name} (rosinality/stylegan2-pytorch)",
        normalization="range",
        extra={
            "format": "rosinality",
            "source": str(path),
            "sha256": sha,
            "channel_multiplier": cm,
            "config": config.to_dict(),
        },
    )
    return StyleGAN2Generator(net, card, layout=layout, gaussian=cache.cached_gaussian(net, sha))
