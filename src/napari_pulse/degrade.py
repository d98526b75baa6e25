"""Downscaling (degradation) operators as differentiable torch modules.

Each operator maps ``(N, C, H, W)`` to ``(N, C, H // f, W // f)`` for an integer factor
``f``, with a separable kernel centred on each low-res pixel's footprint and reflect
padding at the borders. The same modules make test inputs and drive the search, so a
result downscales *exactly* to the pixels it was fitted to.

- ``bicubic``: anti-aliased bicubic (Keys, a = -0.5, kernel stretched by f), as in PULSE.
- ``area``: box binning, what a camera does when it bins pixels.
- ``psf``: Gaussian blur (sigma in high-res pixels) sampled at the low-res pixel centres.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DEGRADATIONS = ("bicubic", "area", "psf")


def _keys(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


#: The widest psf accepted, in high-res pixels per unit of factor: a blur wider than this
#: spreads each low-res pixel over many of its neighbours and cannot be inverted tile by tile.
MAX_SIGMA_PER_FACTOR = 8


def check_sigma(sigma: object, factor: int) -> float:
    """The psf's sigma as a float; ValueError unless a finite number in (0, 8 x factor]."""
    real = isinstance(sigma, (int, float, np.integer, np.floating)) and not isinstance(sigma, bool)
    top = MAX_SIGMA_PER_FACTOR * factor
    if not (real and math.isfinite(sigma) and 0 < sigma <= top):
        raise ValueError(
            "The psf degradation needs sigma > 0 (in high-res pixels), a number of at most "
            f"{top} at factor {factor}; got {sigma!r}."
        )
    return float(sigma)


def kernel_1d(kind: str, factor: int, sigma: float | None = None) -> np.ndarray:
    """The normalised 1-D taps of an operator, centred between the footprint's pixels."""
    if kind == "area":
        return np.full(factor, 1.0 / factor)
    if kind == "bicubic":
        half = 2 * factor
        size = 2 * half  # taps at |offset| < 2 f, offsets are half-integers when f is even
    elif kind == "psf":
        sigma = check_sigma(sigma, factor)
        half = max(factor, math.ceil(3 * sigma) + factor / 2)
        size = 2 * math.ceil(half)
    else:
        raise ValueError(f"Unknown degradation {kind!r}; choose one of {', '.join(DEGRADATIONS)}.")
    if (size - factor) % 2:
        size += 1  # keep the kernel centred on the footprint's centre
    offsets = np.arange(size) - (size - 1) / 2
    if kind == "bicubic":
        taps = _keys(offsets / factor)
    else:
        taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    return taps / taps.sum()


class Degradation(nn.Module):
    """A separable, strided downscaling operator for any integer factor and channel count."""

    def __init__(self, kind: str = "bicubic", factor: int = 4, sigma: float | None = None) -> None:
        super().__init__()
        if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
            raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
        self.kind = kind
        self.factor = int(factor)
        self.sigma = sigma
        taps = torch.tensor(kernel_1d(kind, self.factor, sigma), dtype=torch.float32)
        self.register_buffer("taps", taps, persistent=False)
        self.pad = (len(taps) - self.factor) // 2

    @property
    def margin(self) -> int:
        """High-res pixels beyond a footprint that reach its low-res pixel."""
        return self.pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        f, p = self.factor, self.pad
        if h % f or w % f:
            raise ValueError(f"image size {h}x{w} is not a multiple of the factor {f}")
        if p:
            mode = "reflect" if p < min(h, w) else "replicate"
            x = F.pad(x.reshape(n * c, 1, h, w), (p, p, p, p), mode=mode).view(n, c, h + 2 * p, -1)
        return self.padded(x)

    def padded(self, x: torch.Tensor) -> torch.Tensor:
        """The operator on images already padded by :attr:`margin` pixels on every side:
        ``(N, C, H + 2m, W + 2m)`` to ``(N, C, H // f, W // f)``."""
        n, c, hp, wp = x.shape
        f, p = self.factor, self.pad
        y = x.reshape(n * c, 1, hp, wp)
        taps = self.taps.to(dtype=x.dtype, device=x.device)
        y = F.conv2d(y, taps.view(1, 1, -1, 1), stride=(f, 1))
        y = F.conv2d(y, taps.view(1, 1, 1, -1), stride=(1, f))
        return y.reshape(n, c, (hp - 2 * p) // f, (wp - 2 * p) // f)

    def extra_repr(self) -> str:
        sigma = f", sigma={self.sigma}" if self.kind == "psf" else ""
        return f"kind={self.kind!r}, factor={self.factor}{sigma}"


def downscale(
    image: np.ndarray, factor: int, kind: str = "bicubic", sigma: float | None = None
) -> np.ndarray:
    """Downscale a float ``(H, W)`` or ``(H, W, C)`` array with the operator the search uses."""
    arr = np.asarray(image, dtype=np.float32)
    hwc = arr.ndim == 3
    t = torch.from_numpy(arr.transpose(2, 0, 1) if hwc else arr[None])[None]
    h, w = t.shape[-2:]
    t = t[..., : h - h % factor, : w - w % factor]
    with torch.no_grad():
        out = Degradation(kind, factor, sigma)(t)[0].numpy()
    return out.transpose(1, 2, 0) if hwc else out[0]
