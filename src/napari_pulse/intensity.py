"""Bringing user intensities to the [0, 1] range the generators work in, and back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NORMALIZATIONS = ("auto", "percentile", "range", "minmax")
PERCENTILES = (1.0, 99.8)  # as CARE and ZeroCostDL4Mic normalise microscopy images
#: Floats within [-slack, 1 + slack] count as [0, 1] images in "range" mode.
FLOAT_SLACK = 0.1
ACCEPTED_DTYPES = (np.uint8, np.uint16, np.int16, np.float16, np.float32, np.float64)


@dataclass(frozen=True)
class Intensity:
    """An affine map between the input's units (``lo``..``hi``) and [0, 1]."""

    mode: str
    lo: float
    hi: float

    # Halves throughout: exact in binary floating point, and a span of two huge values
    # (up to +-1.8e308) never overflows.

    def to_unit(self, a: np.ndarray) -> np.ndarray:
        half = np.asarray(a, dtype=np.float64) / 2
        return ((half - self.lo / 2) / (self.hi / 2 - self.lo / 2)).astype(np.float32)

    def from_unit(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return (x * (self.hi / 2 - self.lo / 2) + self.lo / 2) * 2

    def as_dict(self) -> dict:
        return {"mode": self.mode, "lo": self.lo, "hi": self.hi}


def fit_intensity(image: np.ndarray, mode: str) -> Intensity:
    """Choose ``lo``/``hi`` for an image: ``percentile``, ``range`` (of its dtype) or ``minmax``."""
    a = np.asarray(image)
    if mode == "percentile":
        halves = np.percentile(np.asarray(a, dtype=np.float64) / 2, PERCENTILES)
        lo, hi = (float(v) * 2 for v in halves)  # halves: no overflow between huge values
    elif mode == "range":
        if np.issubdtype(a.dtype, np.integer):
            info = np.iinfo(a.dtype)
            lo, hi = float(info.min if a.min() < 0 else 0), float(info.max)
        elif a.min() >= -FLOAT_SLACK and a.max() <= 1 + FLOAT_SLACK:
            lo, hi = 0.0, 1.0  # a float image in [0, 1], give or take resampling overshoot
        else:
            lo, hi = float(a.min()), float(a.max())
    elif mode == "minmax":
        lo, hi = float(a.min()), float(a.max())
    else:
        raise ValueError(
            f"Unknown normalization {mode!r}; choose one of {', '.join(NORMALIZATIONS)}."
        )
    if not hi > lo:  # a flat image (or flat percentiles): any positive span maps it to 0
        lo, hi = _flat_span(lo)
    return Intensity(mode, lo, hi)


def _flat_span(value: float) -> tuple[float, float]:
    """``lo``, ``hi`` for a flat image of ``value``: a span of 1, or of a millionth of the
    value where 1 is below its precision (1e16 + 1 == 1e16); downwards at the top of float64."""
    span = max(1.0, abs(value) * 2**-20)
    if np.isfinite(value + span):
        return value, value + span
    return value - span, value


def cast_like(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Values in input units to the input's dtype: rounded and clipped for integers, clipped
    to the finite range for floats (a flat image at the top of float32 is given a span
    that float64 holds and float32 does not)."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    values, top = np.asarray(values), float(np.finfo(dtype).max)
    if values.size and (np.nanmax(values) > top or np.nanmin(values) < -top):
        values = np.clip(values, -top, top)  # a copy only where needed: outputs can be large
    return values.astype(dtype)
