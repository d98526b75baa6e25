"""Nuclear morphology of generated against real crops: what a microscopist would compare.

Both sets are segmented the same simple way: one Otsu threshold, computed on all the real
crops' pixels together, applied to every crop of both sets; connected components (8-
connectivity) of at least :data:`MIN_AREA` pixels are the objects (scikit-image). Per
object: area, eccentricity, solidity, mean and max intensity, and a texture figure, the
intensity variance inside the object; per crop: the number of objects. Each feature's two
distributions are compared by the Kolmogorov-Smirnov distance (0: the same; 1: disjoint)
and the Wasserstein-1 distance in units of the real feature's standard deviation.
:func:`histograms` draws them side by side (real grey, generated orange) into a PNG.

Used by ``bench/realism.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Components smaller than this (pixels) are noise, not nuclei.
MIN_AREA = 4
FEATURES = ("area", "eccentricity", "solidity", "mean_intensity", "max_intensity", "texture")


def threshold(real: np.ndarray) -> float:
    """One Otsu threshold over every pixel of the real crops ``(N, H, W)`` in [0, 1]."""
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(real.ravel()))


def objects(crops: np.ndarray, level: float) -> dict[str, np.ndarray]:
    """Per-object features of crops ``(N, H, W)`` in [0, 1], and ``count`` per crop."""
    from skimage.measure import label, regionprops

    out: dict[str, list[float]] = {k: [] for k in FEATURES}
    counts = []
    for crop in crops:
        regions = [
            r
            for r in regionprops(label(crop > level, connectivity=2), intensity_image=crop)
            if r.area >= MIN_AREA
        ]
        counts.append(len(regions))
        for r in regions:
            values = r.image_intensity[r.image]
            out["area"].append(float(r.area))
            out["eccentricity"].append(float(r.eccentricity))
            out["solidity"].append(float(r.solidity))
            out["mean_intensity"].append(float(values.mean()))
            out["max_intensity"].append(float(values.max()))
            out["texture"].append(float(values.var()))
    feats = {k: np.asarray(v) for k, v in out.items()}
    feats["count"] = np.asarray(counts, dtype=float)
    return feats


@dataclass(frozen=True)
class Distance:
    feature: str
    ks: float
    wasserstein: float  # in units of the real feature's standard deviation
    real_median: float
    generated_median: float
    n_real: int
    n_generated: int


def compare(real: dict[str, np.ndarray], fake: dict[str, np.ndarray]) -> list[Distance]:
    """One :class:`Distance` per feature (objects per crop last)."""
    from scipy.stats import ks_2samp, wasserstein_distance

    out = []
    for k in (*FEATURES, "count"):
        a, b = real[k], fake[k]
        if len(a) < 2 or len(b) < 2:
            out.append(Distance(k, float("nan"), float("nan"), np.nan, np.nan, len(a), len(b)))
            continue
        spread = float(a.std()) or 1.0
        out.append(
            Distance(
                k,
                float(ks_2samp(a, b).statistic),
                float(wasserstein_distance(a, b)) / spread,
                float(np.median(a)),
                float(np.median(b)),
                len(a),
                len(b),
            )
        )
    return out


def histograms(
    real: dict[str, np.ndarray], fake: dict[str, np.ndarray], path: Path, bins: int = 30
) -> None:
    """Each feature's two histograms (densities over the real range, 1st..99th percentile)
    side by side in one PNG: real grey, generated orange."""
    from PIL import Image, ImageDraw

    names = (*FEATURES, "count")
    w, h, pad = 300, 160, 24
    img = Image.new("RGB", (w * 4, (h + pad) * 2), "white")
    draw = ImageDraw.Draw(img)
    for i, k in enumerate(names):
        x0, y0 = (i % 4) * w, (i // 4) * (h + pad)
        a, b = real[k], fake[k]
        if not len(a) or not len(b):
            continue
        lo, hi = np.percentile(a, (1, 99))
        hi = hi if hi > lo else lo + 1
        ha, _ = np.histogram(np.clip(a, lo, hi), bins, (lo, hi), density=True)
        hb, _ = np.histogram(np.clip(b, lo, hi), bins, (lo, hi), density=True)
        top = max(ha.max(), hb.max()) or 1
        bar = (w - 20) / bins / 2
        for j in range(bins):
            for m, (hist, colour) in enumerate(((ha, (120, 120, 120)), (hb, (230, 130, 30)))):
                left = x0 + 10 + (2 * j + m) * bar
                height = (h - 30) * hist[j] / top
                draw.rectangle([left, y0 + h - 10 - height, left + bar - 1, y0 + h - 10], colour)
        draw.text((x0 + 10, y0 + 4), f"{k} ({lo:.3g}..{hi:.3g})", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
