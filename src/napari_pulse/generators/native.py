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
    """The card and the network's config from a card's JSON; ValueError for anything
    malformed (a card is untrusted input)."""
    if not isinstance(d, dict):
        raise ValueError(f"the model card must be a JSON object, got {type(d).__name__}")
    if d.get("architecture") != "stylegan2":
        raise ValueError(f"unsupported architecture {d.get('architecture')!r} (expected stylegan2)")
    if "config" not in d:
        raise ValueError("the model card has no 'config'")
    fields = {k: d[k] for k in ModelCard.__dataclass_fields__ if k in d}
    for k, v in fields.items():
        if k == "pixel_size_um":
            ok = v is None or (isinstance(v, int | float) and not isinstance(v, bool))
        else:
            ok = isinstance(v, dict if k == "extra" else str)
        if not ok:
            raise ValueError(f"the model card's {k!r} has the wrong type: {v!r}")
    if fields.get("normalization", "range") not in ("percentile", "range", "minmax"):
        raise ValueError(f"the model card's normalization {fields['normalization']!r} is unknown")
    config = StyleGAN2Config.from_dict(d["config"])
    for key, want in (("channels", config.channels), ("resolution", [config.resolution] * 2)):
        if key in d and d[key] != want:
            raise ValueError(f"the model card says {key} {d[key]!r}, its config {want!r}")
    return ModelCard(**fields), config


def check_tensors(config: StyleGAN2Config, shapes: dict[str, tuple[int, ...]]) -> None:
    """ValueError unless the file's tensors are exactly those of ``config``'s network
    (checked on an unallocated network: a card cannot make us allocate what the file does
    not hold)."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in StyleGAN2(config).state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    wrong = [k for k in expected if k in shapes and shapes[k] != expected[k]]
    for what, keys in (
        ("lacks tensors its card's network needs", missing),
        ("holds tensors its card's network does not have", extra),
        ("holds tensors of other shapes than its card's network needs", wrong),
    ):
        if keys:
            listed = ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")
            raise ValueError(f"the file {what}: {listed}")


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
    with safe_open(str(path), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    gauss = {"gaussian.mean", "gaussian.std"}
    if gauss & set(shapes) and not gauss <= set(shapes):
        raise ValueError("the file holds half of a Gaussian fit (gaussian.mean and .std)")
    for k in gauss & set(shapes):
        if shapes[k] != (config.style_dim,):
            raise ValueError(f"{k} has shape {shapes[k]}, not ({config.style_dim},)")
    check_tensors(config, {k: v for k, v in shapes.items() if k not in gauss})
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
