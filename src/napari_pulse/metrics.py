"""Image-quality figures computed offline in numpy: PSNR, SSIM, and a rank correlation.

SSIM follows Wang et al. (2004) as ``skimage.metrics.structural_similarity(...,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)`` computes
it: an 11-tap Gaussian window (sigma 1.5) with symmetric borders, K1 = 0.01, K2 = 0.03,
the mean over the image less 5 pixels at each edge, channels averaged.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SIGMA = 1.5
RADIUS = 5  # int(3.5 * sigma + 0.5), as skimage/scipy truncate the window: 11 taps
K1, K2 = 0.01, 0.03


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR in dB, capped at 100 dB for identical images."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 10 * math.log10(data_range**2 / max(mse, 1e-10 * data_range**2))


def _window() -> np.ndarray:
    x = np.arange(-RADIUS, RADIUS + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / SIGMA) ** 2)
    return w / w.sum()


def _blur(img: np.ndarray) -> np.ndarray:
    """Separable Gaussian filter of a 2-D array, borders mirrored (scipy's ``reflect``)."""
    w = _window()
    p = np.pad(img, RADIUS, mode="symmetric")
    p = sliding_window_view(p, len(w), axis=0) @ w
    return sliding_window_view(p, len(w), axis=1) @ w


def _ssim_2d(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    ux, uy = _blur(x), _blur(y)
    vx = _blur(x * x) - ux * ux
    vy = _blur(y * y) - uy * uy
    vxy = _blur(x * y) - ux * uy
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s[RADIUS:-RADIUS, RADIUS:-RADIUS].mean())


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Mean SSIM of two ``(H, W)`` or ``(H, W, C)`` images (channels averaged)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"SSIM needs images of one shape, got {a.shape} and {b.shape}")
    if a.ndim not in (2, 3) or min(a.shape[:2]) < 2 * RADIUS + 1:
        raise ValueError(
            f"SSIM needs (H, W) or (H, W, C) images of at least {2 * RADIUS + 1}x"
            f"{2 * RADIUS + 1} pixels, got shape {a.shape}"
        )
    if a.ndim == 2:
        return _ssim_2d(a, b, data_range)
    return float(np.mean([_ssim_2d(a[..., c], b[..., c], data_range) for c in range(a.shape[2])]))


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 0, ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    _, inverse = np.unique(x, return_inverse=True)
    inverse = inverse.ravel()
    return (np.bincount(inverse, ranks) / np.bincount(inverse))[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two arrays (over all elements); NaN when one is flat."""
    ra, rb = _ranks(np.ravel(a)), _ranks(np.ravel(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else math.nan
