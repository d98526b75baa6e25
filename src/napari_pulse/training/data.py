"""Training crops: read a folder of images, normalise each as ``upscale`` would, sample crops.

Crops are taken at native pixel size (no resizing). Microscopy fields are often mostly
background, so a crop is kept only when enough of it is foreground (see :class:`CropRule`);
the rule is recorded in the model card.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ..imageio import read_image
from ..intensity import fit_intensity

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")


def held_out(name: str, fraction: float) -> bool:
    """Whether a file belongs to the evaluation split: a stable hash of its name, not its order."""
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
    return h < fraction * 2**32


def list_images(folder: str | Path, holdout: float = 0.0, split: str = "train") -> list[Path]:
    """Sorted image files of ``folder``: the training part (``split="train"``) or the held-out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if split not in ("train", "holdout"):
        raise ValueError(f"split must be 'train' or 'holdout', got {split!r}")
    files = [p for p in files if held_out(p.name, holdout) == (split == "holdout")]
    if not files:
        raise ValueError(f"no {split} images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def to_channels(a: np.ndarray, channels: int, path: Path) -> np.ndarray:
    """``(H, W)`` or ``(H, W, 3)`` to ``(channels, H, W)``; RGB to gray by luminance."""
    if a.ndim == 2:
        a = a[None]
    elif a.ndim == 3 and a.shape[-1] == 3:
        a = np.moveaxis(a, -1, 0)
    else:
        raise ValueError(f"{path.name}: expected a 2D grayscale or RGB image, got shape {a.shape}")
    if channels == 1 and a.shape[0] == 3:
        a = np.tensordot(np.array([0.299, 0.587, 0.114]), a.astype(np.float64), axes=1)[None]
    elif channels == 3 and a.shape[0] == 1:
        a = np.repeat(a, 3, axis=0)
    return a


@dataclass(frozen=True)
class CropRule:
    """Keep a crop when at least ``min_fraction`` of its pixels exceed ``level`` (in [0, 1]).

    With ``dark``, pixels below ``level`` count instead: stained cells on a white
    brightfield background. A pixel's value is its mean over channels. A share
    ``any_share`` of crops is kept whatever it holds, so that the generator can still
    draw the empty background that whole fields contain.
    """

    level: float = 0.25
    min_fraction: float = 0.05
    any_share: float = 0.1
    tries: int = 50
    dark: bool = False

    @classmethod
    def from_card(cls, rule: dict) -> CropRule:
        """The rule a model card records (cards from before ``dark`` existed included)."""
        keys = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in rule.items() if k in keys})

    def keeps(self, crop: np.ndarray) -> bool:
        """``crop`` is ``(channels, H, W)`` or ``(H, W)`` in [0, 1]."""
        value = crop.mean(axis=0) if crop.ndim == 3 else crop
        hit = value < self.level if self.dark else value > self.level
        return float(hit.mean()) >= self.min_fraction


class CropSampler:
    """Random normalised crops in [-1, 1] with flips, 90-degree turns and intensity jitter."""

    def __init__(
        self,
        files: list[Path],
        size: int,
        channels: int,
        normalization: str = "percentile",
        rule: CropRule | None = CropRule(),
        jitter: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.size, self.channels, self.rule, self.jitter = size, channels, rule, jitter
        self.normalization = normalization
        self.images: list[np.ndarray] = []
        for path in files:
            a = to_channels(read_image(path), channels, path)
            if min(a.shape[-2:]) < size:
                continue
            unit = fit_intensity(a, normalization).to_unit(a)
            self.images.append(np.clip(unit, 0.0, 1.0).astype(np.float32))
        if not self.images:
            raise ValueError(f"no image is at least {size}x{size} pixels")
        areas = np.array([im.shape[-1] * im.shape[-2] for im in self.images], dtype=np.float64)
        self.weights = areas / areas.sum()
        self.rng = np.random.default_rng(seed)

    def _crop(self) -> np.ndarray:
        s = self.size
        picky = self.rule is not None and self.rng.random() >= self.rule.any_share
        tries = self.rule.tries if picky else 1
        for _ in range(tries):
            im = self.images[self.rng.choice(len(self.images), p=self.weights)]
            y = self.rng.integers(0, im.shape[-2] - s + 1)
            x = self.rng.integers(0, im.shape[-1] - s + 1)
            crop = im[:, y : y + s, x : x + s]
            if not picky or self.rule.keeps(crop):
                break
        return crop

    def _augment(self, crop: np.ndarray) -> np.ndarray:
        crop = np.rot90(crop, k=int(self.rng.integers(4)), axes=(1, 2))
        if self.rng.random() < 0.5:
            crop = crop[:, :, ::-1]
        if self.jitter:
            gain = 1 + self.rng.uniform(-self.jitter, self.jitter)
            offset = self.rng.uniform(-self.jitter, self.jitter) / 2
            crop = np.clip(crop * gain + offset, 0.0, 1.0)
        return crop

    def batch(self, n: int) -> np.ndarray:
        """``(n, channels, size, size)`` float32 in [-1, 1]."""
        out = np.stack([self._augment(self._crop()) for _ in range(n)])
        return (out * 2 - 1).astype(np.float32)

    def describe(self) -> dict:
        return {
            "normalization": self.normalization,
            "crop_size": self.size,
            "crop_rule": asdict(self.rule) if self.rule else None,
            "augment": "random 90-degree turns, horizontal flips, "
            f"gain and offset jitter +-{self.jitter} (offset +-{self.jitter / 2})",
        }
