"""Fit an expected-error model (:mod:`napari_pulse.error_map`) from a generator's training
images.

From ``crops`` training files (the held-out share never read; chosen with ``seed``), one
region of two generator images a side each (so that it is searched in several tiles, as a
field is), drawn as the generator's training drew its crops (the crop rule of its card,
the default rule when it has none: mostly foreground, a share anywhere), from the file
normalised as a whole with the generator's convention and clipped to [0, 1]: that is the
truth. Its operator-downscaled uint8 version is upscaled with the defaults (one sample),
and the model's weights are fitted to the squared error of the result against the truth
(:func:`napari_pulse.error_map.fit`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import error_map
from ..api import upscale
from ..bank import fingerprint
from ..degrade import downscale
from ..encoder import writable_place
from ..imageio import read_image
from ..intensity import fit_intensity
from ..options import Options
from .data import CropRule, list_images, to_channels


def fit_error_map(
    images: str | Path,
    generator: str,
    factor: int,
    degradation: str = "bicubic",
    sigma: float | None = None,
    *,
    holdout: float = 0.1,
    crops: int = 32,
    seed: int = 0,
    out: str | Path | None = None,
    on_crop: Callable[[int, int], None] | None = None,
    **search: Any,
) -> Path:
    """Fit and write the model for ``generator`` at ``factor`` and the operator; returns
    its path (``out``, else where ``upscale`` finds it). ``on_crop(done, total)`` is
    called after every upscaled crop. ``search``: settings of :func:`~napari_pulse.upscale`
    the crops are upscaled with (default: its defaults, which the model is then for)."""
    opts = Options(
        generator=generator, factor=factor, degradation=degradation, sigma=sigma, **search
    )
    gen = opts.resolve(False).generator
    channels, size = gen.channels, (2 * gen.resolution[0], 2 * gen.resolution[1])
    made = gen.card.extra.get("training", {}) if isinstance(gen.card.extra, dict) else {}
    rule_card = made.get("data", {}).get("crop_rule")
    rule = CropRule.from_card(rule_card) if rule_card else CropRule()
    rng = np.random.default_rng(seed)
    files = list_images(images, holdout, "train")
    cases, used = [], []
    for path in rng.permutation(np.array(files, dtype=object)):
        if len(cases) == crops:
            break
        truth = _crop(Path(path), channels, size, gen.card.normalization, rule, rng)
        if truth is None:
            continue
        user = truth.transpose(1, 2, 0) if channels == 3 else truth[0]
        low = np.rint(np.clip(downscale(user, factor, degradation, sigma), 0, 1) * 255)
        low = low.astype(np.uint8)
        r = upscale(low, options=_defaults(opts, channels == 3))
        image = np.atleast_3d(r.image.astype(np.float64) / 255).transpose(2, 0, 1)[None]
        low_u = np.atleast_3d(low.astype(np.float64) / 255).transpose(2, 0, 1)[None]
        cases.append((image, low_u, truth[None].astype(np.float64)))
        used.append(Path(path).name)
        if on_crop:
            on_crop(len(cases), crops)
    if not cases:
        raise ValueError(f"no training image in {images} holds a {size[0]}x{size[1]} crop")
    card = {
        "generator": gen.name,
        "generator_sha256": fingerprint(gen),
        "factor": factor,
        "degradation": degradation,
        "sigma": sigma,
        "data": f"{Path(images).name}: training split ({len(files)} files, {holdout:.0%} held "
        f"out); one {size[0]}x{size[1]} crop from each of {len(used)} files",
        "files": used,
        "seed": seed,
        "search": f"upscale {'defaults' if not search else search}, one sample, uint8 inputs",
    }
    model = error_map.fit(cases, card)
    model.card["fit"] = _figures(model, cases)
    if out is None:
        out = writable_place(gen, factor, degradation, sigma, error_map.file_name)
    return error_map.save(out, model)


def _defaults(opts: Options, rgb: bool) -> Options:
    from dataclasses import replace

    return replace(opts, normalization="range", rgb=rgb, samples=1)


def _crop(
    path: Path, channels: int, size: tuple[int, int], mode: str, rule: CropRule, rng
) -> np.ndarray | None:
    """A region ``(C, H, W)`` in [0, 1] of one file, as the crop rule draws it; None when
    the rule finds none."""
    a = to_channels(read_image(path), channels, path)
    h, w = size
    if a.shape[-2] < h or a.shape[-1] < w:
        return None
    unit = np.clip(fit_intensity(a, mode).to_unit(a), 0, 1)
    picky = rng.random() >= rule.any_share
    for _ in range(rule.tries if picky else 1):
        y, x = rng.integers(0, a.shape[-2] - h + 1), rng.integers(0, a.shape[-1] - w + 1)
        crop = unit[:, y : y + h, x : x + w]
        if not picky or rule.keeps(crop):
            return crop
    return None


def _figures(model: error_map.ErrorModel, cases) -> dict[str, float]:
    """The fit's own figures: median rank correlation with the actual error, and the
    median predicted against actual RMS error."""
    from ..metrics import spearman

    rho, pred, actual = [], [], []
    for image, low, truth in cases:
        m, e = model.map(image, low), np.abs(image - truth)
        rho.append(spearman(m, e))
        pred.append(float(np.sqrt((m**2).mean())))
        actual.append(float(np.sqrt((e**2).mean())))
    return {
        "spearman_median": float(np.median(rho)),
        "predicted_rms_median": float(np.median(pred)),
        "actual_rms_median": float(np.median(actual)),
    }
