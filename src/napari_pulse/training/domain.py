"""Fit a domain model (:mod:`napari_pulse.domain`) from a generator's training images.

From each training file (the held-out share never read), ``crops`` random regions of two
tiles' size in the generator's pixels (128x128 for a 64x64 generator at x4; seeded),
each normalised as the generator's convention says (:func:`~napari_pulse.intensity.
fit_intensity`, clipped to [0, 1]), downscaled with the operator, stored as uint8 and
cut into the low-res tiles ``upscale`` searches (9 per field, through the pipeline's own
preparation). The first half of the files gives the reference tiles, the other half the
calibration fields whose ``quantile`` sets the cut.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .. import domain, pipeline
from ..api import check_image
from ..bank import fingerprint
from ..degrade import downscale
from ..encoder import writable_place
from ..imageio import read_image
from ..intensity import fit_intensity
from ..options import Options
from .data import list_images, to_channels


def fit_domain(
    images: str | Path,
    generator: str,
    factor: int,
    degradation: str = "bicubic",
    sigma: float | None = None,
    *,
    holdout: float = 0.1,
    crops: int = 2,
    seed: int = 0,
    k: int = 5,
    quantile: float = 0.975,
    out: str | Path | None = None,
    on_file: Callable[[int, int], None] | None = None,
) -> Path:
    """Fit and write the model for ``generator`` at ``factor`` and the operator; returns
    its path (``out``, else where ``upscale`` finds it: beside the generator's file, or
    the cache directory). ``on_file(done, total)`` is called after every file."""
    opts = Options(generator=generator, factor=factor, degradation=degradation, sigma=sigma)
    setup = opts.resolve(False)
    gen = setup.generator
    rgb = gen.channels == 3
    if rgb:  # an RGB generator's fields are RGB
        setup = opts.resolve(True)
    mode = gen.card.normalization
    side = 2 * setup.tile[0] * factor, 2 * setup.tile[1] * factor
    files = list_images(images, holdout, "train")
    rng = np.random.default_rng(seed)
    per_file: list[list[torch.Tensor]] = []
    for i, path in enumerate(files):
        a = to_channels(read_image(path), gen.channels, path)
        fields = []
        for _ in range(crops):
            if a.shape[1] < side[0] or a.shape[2] < side[1]:
                break
            y = rng.integers(0, a.shape[1] - side[0] + 1)
            x = rng.integers(0, a.shape[2] - side[1] + 1)
            region = np.moveaxis(a[:, y : y + side[0], x : x + side[1]], 0, -1)
            unit = np.clip(fit_intensity(region, mode).to_unit(region), 0, 1)
            low = downscale(unit if rgb else unit[..., 0], factor, degradation, sigma)
            field = np.clip(np.rint(low * 255), 0, 255).astype(np.uint8)
            arr, is_rgb = check_image(field, rgb)
            fields.append(pipeline.prepare(arr, is_rgb, setup)[1].lr_tiles.float().cpu())
        per_file.append(fields)
        if on_file is not None:
            on_file(i + 1, len(files))
    half = len(per_file) // 2
    reference = [t for fields in per_file[:half] for t in fields]
    calibration = [t for fields in per_file[half:] for t in fields]
    if not reference or not calibration:
        raise ValueError(
            f"{images}: too few training images of at least {side[0]}x{side[1]} pixels to fit "
            f"a domain model (found {sum(map(bool, per_file))} of {len(files)} files)"
        )
    card = {
        "generator": gen.name,
        "generator_sha256": fingerprint(gen),
        "factor": factor,
        "degradation": degradation,
        "sigma": sigma,
        "low_shape": list(reference[0].shape[1:]),
        "data": f"{Path(images).name}: training split ({len(files)} files, {holdout:.0%} held out)",
        "fields": f"{crops} random {side[0]}x{side[1]} regions per file, seed {seed}",
        "reference_files": half,
        "calibration_fields": len(calibration),
    }
    model = domain.fit(torch.cat(reference), calibration, k, quantile, card)
    naming = domain.file_name
    path = Path(out) if out else writable_place(gen, factor, degradation, sigma, naming)
    path.parent.mkdir(parents=True, exist_ok=True)
    return domain.save(path, model)
