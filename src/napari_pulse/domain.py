"""Is the input the kind of image the generator was trained on? A check on the low-res
tiles, made before any search, cheap and on by default where a model exists.

At x4 a generator can fit a 16x16 tile of almost anything, so ``success`` says nothing
about the domain. A :class:`DomainModel` describes the low-res tiles of the generator's
training images at one factor and operator by 14 plain figures per tile
(:func:`tile_features`: intensity quantiles and histogram, gradient, lag-1 autocorrelation).
A tile's distance is that to its ``k``-th nearest reference tile (standardised figures);
an image's score is the mean over its tiles, over the model's ``cut``: the score of
``quantile`` of the calibration fields (real training images the reference did not use).
An image with a score above 1 is flagged as foreign (:attr:`Result.in_domain
<napari_pulse.result.Result>` False).

A model is a safetensors file, ``<generator>.domain-x<factor>-<degradation>.safetensors``,
with its card (the generator's fingerprint, factor, operator, tile, data, seed), found
where encoders are (:func:`napari_pulse.encoder.candidates`); ``scripts/fit_domain.py``
makes the bundled one. Measured in ``bench/domain_flag.py``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .generators.base import DomainGenerator

CARD_KEY = "napari_pulse.domain"
#: Part of the card: bump when :func:`tile_features` changes (older files are then ignored).
VERSION = 1
#: Intensity histogram bins of :func:`tile_features` (tiles in [0, 1]).
BINS = (0.0, 0.05, 0.15, 0.3, 0.5, 0.7, 1.01)
#: Tiles scored at a time (bounds memory on large fields).
CHUNK = 4096


def file_name(stem: str, factor: int, degradation: str, sigma: float | None = None) -> str:
    """``<stem>.domain-x<factor>-<degradation>[-s<sigma>].safetensors``."""
    s = "" if sigma is None else f"-s{sigma:g}"
    return f"{stem}.domain-x{factor}-{degradation}{s}.safetensors"


def tile_features(tiles: torch.Tensor) -> torch.Tensor:
    """``(N, C, h, w)`` low-res tiles in [0, 1] -> ``(N, 14)`` figures of their mean over
    channels: mean, std, 10/50/90th percentiles, median and 90th percentile of the
    neighbour steps, the share of pixels in each of the :data:`BINS`, and the lag-1
    autocorrelation along X."""
    t = tiles.float().mean(dim=1)
    x = t.flatten(1)
    steps = torch.cat(
        [
            (t[:, 1:, :] - t[:, :-1, :]).abs().flatten(1),
            (t[:, :, 1:] - t[:, :, :-1]).abs().flatten(1),
        ],
        dim=1,
    )
    q = torch.quantile(x, torch.tensor([0.1, 0.5, 0.9]), dim=1).T
    gq = torch.quantile(steps, torch.tensor([0.5, 0.9]), dim=1).T
    hist = [((x >= a) & (x < b)).float().mean(1) for a, b in zip(BINS[:-1], BINS[1:], strict=True)]
    c = t - t.mean(dim=(1, 2), keepdim=True)
    var = c.pow(2).mean(dim=(1, 2)).clamp(min=1e-8)
    ac = (c[:, :, 1:] * c[:, :, :-1]).mean(dim=(1, 2)) / var
    first = [x.mean(1, keepdim=True), x.std(1, keepdim=True), q, gq]
    return torch.cat([*first, torch.stack(hist, 1), ac[:, None]], dim=1)


@dataclass
class DomainModel:
    """Reference tiles' figures and the cut that flags an image (see the module)."""

    reference: torch.Tensor  # (R, 14), standardised
    mean: torch.Tensor  # (14,)
    std: torch.Tensor  # (14,)
    k: int
    cut: float
    card: dict[str, Any]
    path: Path | None = None  # the file it was read from

    def distances(self, tiles: torch.Tensor) -> torch.Tensor:
        """Each tile's distance to its ``k``-th nearest reference tile, over the cut."""
        out = []
        for part in tiles.cpu().split(CHUNK):  # torch.quantile takes at most 2**24 values
            y = (tile_features(part) - self.mean) / self.std
            out.append(torch.cdist(y, self.reference).topk(self.k, largest=False).values[:, -1])
        return torch.cat(out) / self.cut

    def score(self, tiles: torch.Tensor) -> float:
        """The image's score: the mean of its tiles' distances (above 1: foreign)."""
        return float(self.distances(tiles).mean())


def fit(
    reference: torch.Tensor,
    calibration: list[torch.Tensor],
    k: int,
    quantile: float,
    card: dict[str, Any],
) -> DomainModel:
    """A model from reference tiles ``(R, C, h, w)`` and calibration fields (each
    ``(T, C, h, w)``): the cut is the ``quantile`` (0..1) of the fields' mean distances."""
    f = torch.cat([tile_features(part) for part in reference.split(CHUNK)])
    mean, std = f.mean(0), f.std(0) + 1e-6
    model = DomainModel((f - mean) / std, mean, std, k, 1.0, card)
    scores = torch.tensor([model.score(field) for field in calibration])
    model.cut = float(torch.quantile(scores, quantile))
    model.card = {**card, "k": k, "quantile": quantile, "cut": model.cut}
    return model


def save(path: str | os.PathLike, model: DomainModel) -> Path:
    """Write ``model`` with its card (atomically)."""
    path = Path(path)
    card = {**model.card, "version": VERSION, "k": model.k, "cut": model.cut}
    tensors = {"reference": model.reference, "mean": model.mean, "std": model.std}
    tensors = {k: v.float().contiguous() for k, v in tensors.items()}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    save_file(tensors, str(tmp), metadata={CARD_KEY: json.dumps(card, sort_keys=True)})
    tmp.replace(path)
    return path


def load(path: str | os.PathLike) -> DomainModel:
    """A model file; ValueError when the file is not one."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        t = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        raise ValueError(f"{Path(path).name}: not a readable domain model ({exc})") from exc
    if CARD_KEY not in meta:
        raise ValueError(f"{Path(path).name} is not a napari-pulse domain model (no card)")
    card = json.loads(meta[CARD_KEY])
    k, cut = int(card["k"]), float(card["cut"])
    return DomainModel(t["reference"], t["mean"], t["std"], k, cut, card, Path(path))


_LOADED: dict[tuple[str, int], DomainModel | None] = {}


def find(
    gen: DomainGenerator, low_shape: tuple[int, ...], factor: int, degradation: str, sigma=None
) -> DomainModel | None:
    """The model made for ``gen`` at this tile, factor and operator; None when there is
    none (files made for other weights, tiles or operators are skipped)."""
    from .encoder import find_kept, made_for

    want = made_for(VERSION, gen, low_shape, factor, degradation, sigma)
    return find_kept(gen, factor, degradation, sigma, file_name, load, want, _LOADED)


def for_job(setup, job) -> DomainModel | None:
    """The model for a job's generator, factor, operator and low-res tile (``setup``: an
    :class:`~napari_pulse.options.Setup`, ``job``: a :class:`~napari_pulse.job.Job`)."""
    d = setup.degrade
    return find(setup.generator, tuple(job.lr_tiles.shape[1:]), setup.factor, d.kind, d.sigma)


def warning(score: float | None) -> str | None:
    """A warning for users when the input is flagged as foreign."""
    if score is None or score <= 1:
        return None
    return (
        f"foreign image (domain score {score:.2f} > 1): its low-res tiles look unlike this "
        "generator's training images, so what it adds is a guess from another kind of "
        "sample; pick or train a generator for this kind of image"
    )
