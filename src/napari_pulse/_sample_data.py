"""Sample data bundled with the plugin (made by ``scripts/make_samples.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"


def face_lowres() -> np.ndarray:
    """An 8x8 RGB uint8 face: a DCGAN face downscaled x8 (bicubic); synthetic, no real person."""
    from PIL import Image

    return np.asarray(Image.open(DATA / "face_lr.png").convert("RGB"))


def face_sample() -> list[tuple]:
    """napari sample-data hook: the low-res face as an RGB image layer."""
    return [(face_lowres(), {"name": "face (8x8, low-res)", "rgb": True})]


def nuclei_lowres() -> np.ndarray:
    """A 64x64 uint8 field of fluorescence nuclei, downscaled x4 (bicubic) from held-out data."""
    from PIL import Image

    return np.asarray(Image.open(DATA / "nuclei_lr.png").convert("L"))


def nuclei_sample() -> list[tuple]:
    """napari sample-data hook: the low-res nuclei field as a grayscale image layer."""
    return [(nuclei_lowres(), {"name": "nuclei (64x64, low-res)", "colormap": "gray"})]
