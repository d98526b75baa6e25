"""Our native generator format: ``*.safetensors`` weights with the model card inside.

The card (name, domain, architecture and its config, resolution, channels, intensity
normalisation, pixel size, training data and licence, how it was made) is JSON, stored in
the file's safetensors metadata under ``napari_pulse.card``; :func:`save_native` also writes
it beside the weights as ``<name>.json`` for people to read. Loading never runs code.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from . import cache
from .base import ModelCard
from .stylegan2 import StyleGAN2, StyleGAN2Config, StyleGAN2Generator

CARD_KEY = "napari_pulse.card"
FORMAT_VERSION = 1


def card_to_dict(card: ModelCard, config: StyleGAN2Config) -> dict:
    d = asdict(card)
    d.update(
        format_version=FORMAT_VERSION,
        architecture="stylegan2",
        config=config.to_dict(),
        resolution=[config.resolution, config.resolution],
        channels=config.channels,
    )
    return d


def card_from_dict(d: dict) -> tuple[ModelCard, StyleGAN2Config]:
    if d.get("architecture") != "stylegan2":
        raise ValueError(f"unsupported architecture {d.get('architecture')!r} (expected stylegan2)")
    fields = {k: d[k] for k in ModelCard.__dataclass_fields__ if k in d}
    return ModelCard(**fields), StyleGAN2Config.from_dict(d["config"])


def save_native(
    path: str | Path,
    net: StyleGAN2,
    card: ModelCard,
    gaussian: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Path:
    """Write ``net`` (and its Gaussian fit, if given) with ``card`` to ``path``."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"native generator files end in .safetensors, got {path.name}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    if gaussian is not None:
        tensors["gaussian.mean"] = gaussian[0].detach().cpu().contiguous()
        tensors["gaussian.std"] = gaussian[1].detach().cpu().contiguous()
    card_json = json.dumps(card_to_dict(card, net.config), indent=2, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    save_file(tensors, str(tmp), metadata={CARD_KEY: card_json})
    tmp.replace(path)
    path.with_suffix(".json").write_text(card_json + "\n")
    return path


def read_card(path: str | Path) -> dict:
    """The model card of a native file, without reading its tensors."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if CARD_KEY not in meta:
        raise ValueError(f"{path} has no napari-pulse model card; is it a napari-pulse generator?")
    return json.loads(meta[CARD_KEY])


def load_native_net(path: str | Path) -> tuple[StyleGAN2, ModelCard, tuple | None]:
    """The network, its card and its stored Gaussian fit (or None)."""
    card, config = card_from_dict(read_card(path))
    net = StyleGAN2(config)
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    gaussian = None
    if "gaussian.mean" in tensors:
        gaussian = (tensors.pop("gaussian.mean"), tensors.pop("gaussian.std"))
    net.load_state_dict(tensors, strict=True)
    net.eval().requires_grad_(False)
    return net, card, gaussian


def load_native(path: str | Path, layout: str = "w+") -> StyleGAN2Generator:
    """A search-ready generator from a native ``.safetensors`` file.

    A file without a stored Gaussian fit gets one from the cache (computed there once).
    """
    net, card, gaussian = load_native_net(path)
    if gaussian is None:
        gaussian = cache.cached_gaussian(net, cache.file_sha256(path))
    return StyleGAN2Generator(net, card, layout=layout, gaussian=gaussian)
