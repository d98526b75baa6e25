"""Where is the upscaled image likely wrong? A per-pixel expected error, calibrated on the
generator's training domain.

The samples' spread only sees what the samples disagree on; most of the error sits where
every sample invents the same thing (nuclear edges that all samples put in one place). What
ranks the error better is where the output departs from plain interpolation of the input
(the detail the generator added) and how steep it is there. An :class:`ErrorModel` holds
three weights, fitted on training images of the generator's domain (their upscales against
their truth), so that the expected squared error of a pixel of the image is::

    w_departure * pool((image - bicubic(input))**2) + w_gradient * pool(|grad image|**2) + w_floor

with ``pool`` a Gaussian window of :data:`SIGMA` high-res pixels. :meth:`ErrorModel.map`
is its square root, in the image's units: an RMS error estimate, so the map's mean over an
image is close to the image's actual RMS error on the training domain, and its ranking
points at the pixels most likely wrong (``bench/spread.py``). It needs only the image and
its input, so it exists for one sample as for several.

A model is a JSON file, ``<generator>.error-x<factor>-<degradation>.json``, with its card
(the generator's fingerprint, factor, operator, data, seed, fitted figures), found where
encoders and domain models are (:func:`napari_pulse.encoder.candidates`);
``scripts/fit_error_map.py`` makes the bundled one.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .generators.base import DomainGenerator

CARD_KEY = "napari_pulse.error_map"
#: Part of the card: bump when :func:`features` changes (older files are then ignored).
VERSION = 1
#: The pooling window's sigma, in high-res pixels.
SIGMA = 0.5
#: Low-res pixels of margin a window of the map needs around it to equal the whole map
#: there (bicubic reads 2, the gradient and the window 3 high-res pixels): equal bit for
#: bit where the factor is a power of two, to about 1e-15 otherwise (bicubic's offsets).
HALO = 3
#: High-res rows of the map computed at a time (about 100 bytes per pixel of them).
BAND = 512


def file_name(stem: str, factor: int, degradation: str, sigma: float | None = None) -> str:
    """``<stem>.error-x<factor>-<degradation>[-s<sigma>].json``."""
    s = "" if sigma is None else f"-s{sigma:g}"
    return f"{stem}.error-x{factor}-{degradation}{s}.json"


def features(image: np.ndarray, low: np.ndarray) -> torch.Tensor:
    """The map's figures per pixel, ``(P, C, H, W, 3)`` float64: the pooled squared
    departure of ``image`` ``(P, C, H, W)`` from the bicubic upsampling of ``low``
    ``(P, C, h, w)`` (both in [0, 1] units), its pooled squared gradient, and 1."""
    departure, gradient = _terms(image, low)
    return torch.stack([departure, gradient, torch.ones_like(departure)], dim=-1)


def _terms(image: np.ndarray, low: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The pooled squared departure from bicubic and the pooled squared gradient."""
    from .result import gaussian_mean

    x = torch.from_numpy(np.asarray(image, dtype=np.float64))
    lo = torch.from_numpy(np.asarray(low, dtype=np.float64))
    p, c, h, w = x.shape
    up = F.interpolate(lo.reshape(p * c, 1, *lo.shape[-2:]), size=(h, w), mode="bicubic")
    departure = gaussian_mean((x - up.clamp_(0, 1).reshape(p, c, h, w)).square_(), SIGMA)
    del up
    padded = F.pad(x.reshape(p * c, 1, h, w), (1, 1, 1, 1), mode="replicate")[:, 0]
    grad = ((padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]) / 2).square_()
    grad += ((padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]) / 2).square_()
    del padded
    return departure, gaussian_mean(grad.reshape(p, c, h, w), SIGMA)


@dataclass
class ErrorModel:
    """The weights of the expected squared error (see the module) and the file's card."""

    weights: tuple[float, float, float]  # departure, gradient, floor
    card: dict[str, Any]
    path: Path | None = None  # the file it was read from

    def map(self, image: np.ndarray, low: np.ndarray) -> np.ndarray:
        """The expected absolute (RMS) error of every pixel of ``image`` ``(P, C, H, W)``
        given its input ``low`` ``(P, C, h, w)``, in the same [0, 1] units, float64;
        computed a plane and :data:`BAND` rows at a time (with :data:`HALO` around them),
        to bound memory."""
        out = np.empty(np.shape(image), dtype=np.float64)
        a, b, floor = self.weights
        f = out.shape[-2] // np.shape(low)[-2]
        rows, halo = max(1, BAND // f) * f, HALO * f  # whole low-res rows
        for i in range(len(out)):
            for y0 in range(0, out.shape[-2], rows):
                y1 = min(y0 + rows, out.shape[-2])
                r0, r1 = max(y0 - halo, 0), min(y1 + halo, out.shape[-2])
                part = image[i : i + 1, :, r0:r1]
                departure, gradient = _terms(part, low[i : i + 1, :, r0 // f : r1 // f])
                e = departure.mul_(a).add_(gradient.mul_(b)).add_(floor).clamp_(min=0).sqrt_()
                out[i, :, y0:y1] = e.numpy()[0, :, y0 - r0 : y1 - r0]
        return out


def fit(cases: list[tuple[np.ndarray, np.ndarray, np.ndarray]], card: dict[str, Any]) -> ErrorModel:
    """A model from ``(image, low, truth)`` triples (planes in [0, 1], as :func:`features`
    takes them): non-negative least squares of the squared error on the figures."""
    a = torch.cat([features(img, low).reshape(-1, 3) for img, low, _ in cases])
    b = torch.cat(
        [torch.from_numpy((np.asarray(i, np.float64) - t) ** 2).flatten() for i, _, t in cases]
    )
    weights = _nnls(a, b)
    return ErrorModel(tuple(float(v) for v in weights), card)


def _nnls(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Non-negative least squares for a few columns: the best unconstrained fit over every
    subset of the columns whose weights come out non-negative."""
    best, best_res = torch.zeros(a.shape[1], dtype=a.dtype), float((b**2).sum())
    for k in range(1, a.shape[1] + 1):
        for cols in itertools.combinations(range(a.shape[1]), k):
            sol = torch.linalg.lstsq(a[:, cols], b[:, None]).solution[:, 0]
            if (sol < 0).any():
                continue
            res = float(((a[:, cols] @ sol - b) ** 2).sum())
            if res < best_res:
                best_res, best = res, torch.zeros(a.shape[1], dtype=a.dtype)
                best[list(cols)] = sol
    return best


def save(path: str | os.PathLike, model: ErrorModel) -> Path:
    """Write ``model`` with its card (atomically)."""
    path = Path(path)
    data = {CARD_KEY: {**model.card, "version": VERSION, "sigma_px": SIGMA}}
    data["weights"] = {"departure": model.weights[0], "gradient": model.weights[1]}
    data["weights"]["floor"] = model.weights[2]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def load(path: str | os.PathLike) -> ErrorModel:
    """A model file; ValueError when the file is not one."""
    try:
        data = json.loads(Path(path).read_text())
        card, w = data[CARD_KEY], data["weights"]
        weights = (float(w["departure"]), float(w["gradient"]), float(w["floor"]))
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        raise ValueError(f"{Path(path).name}: not a readable error model ({exc})") from exc
    if not all(math.isfinite(v) and v >= 0 for v in weights):
        raise ValueError(f"{Path(path).name}: weights must be finite and non-negative")
    return ErrorModel(weights, card, Path(path))


_LOADED: dict[tuple[str, int], ErrorModel | None] = {}


def find(gen: DomainGenerator, factor: int, degradation: str, sigma=None) -> ErrorModel | None:
    """The model made for ``gen``'s weights at this factor and operator; None when there is
    none (files made for other weights or operators, and damaged files, are skipped)."""
    from .encoder import find_kept, made_for

    want = made_for(VERSION, gen, (), factor, degradation, sigma)
    want.pop("low_shape")  # the map does not depend on the tile
    return find_kept(gen, factor, degradation, sigma, file_name, load, want, _LOADED)
