"""How the user's array maps to planes ``(P, C, h, w)`` for the search, and back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .generators import DomainGenerator


def has_single_channel(shape: tuple[int, ...], rgb: bool) -> bool:
    """Whether a grayscale image's last axis is a channel axis of 1 (``(..., Y, X, 1)``):
    an X axis of one pixel could not be upscaled, so a trailing 1 is read as a channel."""
    return not rgb and len(shape) >= 3 and shape[-1] == 1


@dataclass(frozen=True)
class Layout:
    """The array's leading axes (each plane upscaled on its own) and its channels."""

    lead: tuple[int, ...]  # leading (non-spatial) axes
    rgb: bool
    split_channels: bool  # RGB input on a grayscale generator: each channel is a plane
    #: A grayscale image with a trailing channel axis of 1, ``(..., Y, X, 1)``, kept so.
    single_channel: bool = False

    @classmethod
    def of(cls, arr: np.ndarray, rgb: bool, gen: DomainGenerator) -> Layout:
        single = has_single_channel(arr.shape, rgb)
        lead = arr.shape[:-3] if rgb or single else arr.shape[:-2]
        return cls(lead, rgb, rgb and gen.channels == 1, single)

    def to_planes(self, unit: np.ndarray) -> np.ndarray:
        """``(*lead, h, w[, 3])`` to ``(P, C, h, w)``."""
        if self.single_channel:
            unit = unit[..., 0]
        if self.rgb:
            h, w = unit.shape[-3:-1]
            x = unit.reshape(-1, h, w, 3).transpose(0, 3, 1, 2)  # (P, 3, h, w)
            return np.ascontiguousarray(x.reshape(-1, 1, h, w) if self.split_channels else x)
        h, w = unit.shape[-2:]
        return np.ascontiguousarray(unit.reshape(-1, 1, h, w))

    def from_planes(self, x: np.ndarray) -> np.ndarray:
        """``(P, N, C, H, W)`` back to ``(N, *lead, H, W[, 3])``."""
        n_planes, n, c, hh, ww = x.shape
        if self.split_channels:
            x = x.reshape(n_planes // 3, 3, n, hh, ww).transpose(0, 2, 1, 3, 4)  # (P, N, 3, H, W)
        x = x.transpose(1, 0, 2, 3, 4)  # (N, P, C, H, W)
        if self.rgb:
            return x.transpose(0, 1, 3, 4, 2).reshape(n, *self.lead, hh, ww, 3)
        if self.single_channel:
            return x.reshape(n, *self.lead, hh, ww, 1)
        return x.reshape(n, *self.lead, hh, ww)

    def per_tile(self, values: np.ndarray, reduce: str, shape: tuple[int, int]) -> np.ndarray:
        """Per-plane tile figures ``(P, T)`` as ``(*lead, rows, cols)``: one figure per RGB
        tile when channels were split (their ``mean`` or ``max``)."""
        if self.split_channels:
            values = values.reshape(-1, 3, values.shape[-1])
            values = values.mean(axis=1) if reduce == "mean" else values.max(axis=1)
        return values.reshape(*self.lead, *shape)

    def conversion(self, gen: DomainGenerator) -> str:
        """How channels were matched, in words (for ``params``)."""
        if self.split_channels:
            return "rgb input, grayscale generator: each channel upscaled on its own"
        if not self.rgb and gen.channels == 3:
            return "grayscale input, rgb generator: generator output taken as luminance (BT.601)"
        return "none"
