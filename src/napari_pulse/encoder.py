"""Encoders: a learned first guess of the latent behind a low-res tile (amortised inversion).

An :class:`Encoder` maps a low-res tile ``(C, h, w)`` in [0, 1] to a latent in the search's
space (each latent vector on its sphere). It is made for one generator, one factor and one
degradation (``napari-pulse train-encoder``, :mod:`napari_pulse.training.encoder`): trained
on the generator's own draws, then on real low-res crops with the search's own objective,
the low-res error of D(G(E(y))). The search starts every tile from its guess
(:class:`napari_pulse.starts.EncoderStarts`) and refines it for a few steps instead of
exploring from blind starts.

An encoder is a safetensors file with its card in the metadata (the generator's
fingerprint, factor, operator, shapes, training data and seed), named
``<generator>.encoder-x<factor>-<degradation>.safetensors`` and found beside its
generator (:func:`find`): beside a generator file, in the cache directory's ``encoders``
folder, or among the bundled generators. A file whose fingerprint is not the generator's is
never used. A card may also hold the budget of the encoder rung measured for that encoder
(``"rung"``: ``starts``, ``steps``, ``patience``; ``train-encoder --rung-steps ...``), which
the search uses where the user sets none (:meth:`napari_pulse.refine.RefineConfig.encoder_rung`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .generators.base import DomainGenerator
from .generators.cache import cache_dir

CARD_KEY = "napari_pulse.encoder"
#: Part of the card: bump when the architecture changes (older files are then ignored).
VERSION = 1
BUNDLED_DIR = Path(__file__).resolve().parent / "data" / "generators"


def file_name(stem: str, factor: int, degradation: str, sigma: float | None = None) -> str:
    """``<stem>.encoder-x<factor>-<degradation>[-s<sigma>].safetensors``."""
    s = "" if sigma is None else f"-s{sigma:g}"
    return f"{stem}.encoder-x{factor}-{degradation}{s}.safetensors"


class Encoder(nn.Module):
    """Low-res tiles ``(N, C, h, w)`` in [0, 1] -> latents ``(N, *latent_shape)`` on the
    search's sphere (every latent vector of norm sqrt(its size)).

    Convolutions at the tile's size, then stride-2 convolutions (doubling the width, at most
    ``4 * width``) until it is at most 4 pixels a side, then two linear layers.
    """

    def __init__(
        self,
        low_shape: tuple[int, ...],
        latent_shape: tuple[int, ...],
        width: int = 32,
        hidden: int = 512,
    ) -> None:
        super().__init__()
        self.low_shape, self.latent_shape = tuple(low_shape), tuple(latent_shape)
        self.width, self.hidden = width, hidden
        c, h, w = self.low_shape
        layers: list[nn.Module] = [nn.Conv2d(c, width, 3, padding=1), nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2)]
        ch = width
        while max(h, w) > 4:
            out = min(2 * ch, 4 * width)
            layers += [nn.Conv2d(ch, out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            layers += [nn.Conv2d(out, out, 3, padding=1), nn.LeakyReLU(0.2)]
            ch, h, w = out, (h + 1) // 2, (w + 1) // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(ch * h * w, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, math.prod(self.latent_shape)),
        )

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        v = self.head(self.features(low * 2 - 1)).view(-1, *self.latent_shape)
        return nn.functional.normalize(v, dim=-1) * math.sqrt(self.latent_shape[-1])

    def config(self) -> dict[str, Any]:
        return {
            "low_shape": list(self.low_shape),
            "latent_shape": list(self.latent_shape),
            "width": self.width,
            "hidden": self.hidden,
        }


def save(path: str | os.PathLike, encoder: Encoder, card: dict[str, Any]) -> Path:
    """Write ``encoder`` with its ``card`` (atomically: a partial file is never left); the
    weights are stored in half precision (a few MB) and read back as float32."""
    path = Path(path)
    full = {**card, "version": VERSION, "architecture": encoder.config()}
    tensors = {k: v.detach().cpu().half().contiguous() for k, v in encoder.state_dict().items()}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    save_file(tensors, str(tmp), metadata={CARD_KEY: json.dumps(full, sort_keys=True)})
    tmp.replace(path)
    return path


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """The card of an encoder file; ValueError when the file is not one."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        raise ValueError(f"{Path(path).name}: not a readable encoder file ({exc})") from exc
    if CARD_KEY not in meta:
        raise ValueError(f"{Path(path).name} is not a napari-pulse encoder (no encoder card)")
    return json.loads(meta[CARD_KEY])


def load(path: str | os.PathLike) -> tuple[Encoder, dict[str, Any]]:
    """An encoder file's network (frozen, on the CPU) and card."""
    card = read_card(path)
    arch = card["architecture"]
    shapes = tuple(arch["low_shape"]), tuple(arch["latent_shape"])
    enc = Encoder(*shapes, int(arch["width"]), int(arch["hidden"]))
    enc.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return enc.eval().requires_grad_(False), card


def user_file(gen: DomainGenerator) -> Path | None:
    """The generator's own file, when it came from one that is not bundled."""
    source = getattr(gen, "source_file", None)
    if source is None or Path(source).resolve().parent == BUNDLED_DIR.resolve():
        return None
    return Path(source)


def candidates(
    gen: DomainGenerator, factor: int, degradation: str, sigma=None, naming=None
) -> list[Path]:
    """Where an encoder for ``gen`` at this factor and operator may be, in order: beside the
    generator's file (not for bundled generators), in the cache directory (where
    ``train-encoder`` writes one for a bundled generator), among the bundled generators.
    ``naming`` (default :func:`file_name`) names other files kept the same way, such as
    :mod:`napari_pulse.domain` models."""
    naming = naming or file_name
    name = naming(gen.name, factor, degradation, sigma)
    found = []
    source = user_file(gen)
    if source is not None:
        found.append(source.with_name(naming(source.stem, factor, degradation, sigma)))
    found.append(cache_dir() / "encoders" / name)
    found.append(BUNDLED_DIR / name)
    return found


def writable_place(
    gen: DomainGenerator, factor: int, degradation: str, sigma=None, naming=None
) -> Path:
    """Where a new file for ``gen`` goes so that :func:`find` sees it: beside the
    generator's file when it has one and the folder is writable (never inside the
    installed package), else the cache directory."""
    places = candidates(gen, factor, degradation, sigma, naming)[:-1]  # never the bundled
    if len(places) == 2 and os.access(places[0].parent, os.W_OK):
        return places[0]
    return places[-1]


def made_for(
    version: int, gen: DomainGenerator, low_shape, factor: int, degradation: str, sigma
) -> dict[str, Any]:
    """What a file kept beside ``gen`` (an encoder, a domain model) must have been made
    for to be used: its format version, the generator's weights, the factor, the operator
    and the low-res tile."""
    from .bank import fingerprint

    return {
        "version": version,
        "generator_sha256": fingerprint(gen),
        "factor": factor,
        "degradation": degradation,
        "sigma": sigma,
        "low_shape": list(low_shape),
    }


def find_kept(
    gen: DomainGenerator,
    factor: int,
    degradation: str,
    sigma,
    naming: Callable[..., str],
    load: Callable[[Path], Any],
    want: dict[str, Any],
    cache: dict[tuple[str, int], Any],
) -> Any:
    """The first model kept beside ``gen`` (files named by ``naming``, read by ``load``,
    which raises ValueError for a damaged file) whose card matches ``want``
    (:func:`made_for`); None when there is none. What a file held is kept in ``cache`` by
    path and modification time; a damaged file gives None rather than a failed upscale."""
    for path in candidates(gen, factor, degradation, sigma, naming):
        if not path.is_file():
            continue
        key = (str(path.resolve()), path.stat().st_mtime_ns)
        if key not in cache:
            try:
                cache[key] = load(path)
            except ValueError:
                cache[key] = None
        model = cache[key]
        if model is not None and {k: model.card.get(k) for k in want} == want:
            return model
    return None


def _identity(card: dict[str, Any]) -> dict[str, Any]:
    """What an encoder was made for: its version, generator, operator and shapes."""
    arch = card.get("architecture", {})
    keys = ("version", "generator_sha256", "factor", "degradation", "sigma")
    return {
        **{k: card.get(k) for k in keys},
        "low_shape": list(arch.get("low_shape", [])),
        "latent_shape": list(arch.get("latent_shape", [])),
    }


_LOADED: dict[tuple[str, int], tuple[Encoder, dict[str, Any]]] = {}

#: The budget keys a card's ``"rung"`` may hold.
RUNG_KEYS = ("starts", "steps", "patience")


class Found(NamedTuple):
    """An encoder found for a job: the network, its file, and the rung budget its card
    holds (empty when it holds none)."""

    encoder: Encoder
    path: Path
    rung: dict[str, int]


def rung_of(card: dict[str, Any]) -> dict[str, int]:
    """The rung budget of an encoder's card: positive integers under :data:`RUNG_KEYS`
    (anything else is ignored)."""
    held = card.get("rung") or {}
    if not isinstance(held, dict):
        return {}
    return {
        k: int(v)
        for k, v in held.items()
        if k in RUNG_KEYS and isinstance(v, int) and not isinstance(v, bool) and v > 0
    }


def find(
    gen: DomainGenerator, low_shape: tuple[int, ...], factor: int, degradation: str, sigma=None
) -> Found | None:
    """The encoder made for ``gen`` at this tile, factor and operator, its file and its
    rung budget; None when there is none (files made for other weights are skipped)."""
    paths = [p for p in candidates(gen, factor, degradation, sigma) if p.is_file()]
    if not paths:
        return None
    want = made_for(VERSION, gen, low_shape, factor, degradation, sigma)
    want["latent_shape"] = list(gen.latent_shape)
    for path in paths:
        key = (str(path.resolve()), path.stat().st_mtime_ns)
        if key not in _LOADED:
            try:
                _LOADED[key] = load(path)
            except Exception:  # noqa: BLE001 - a damaged file: the search runs without it
                continue
        enc, card = _LOADED[key]
        if _identity(card) == want:
            return Found(enc, path, rung_of(card))
    return None
