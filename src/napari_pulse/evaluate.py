"""Judge a generator on your own data: degrade high-res images, upscale them back, compare.

For each high-res image (TIFF/PNG/JPEG, a single ``(Y, X)`` or ``(Y, X, 3)`` image):

1. it is center-cropped to a multiple of the factor (the crop is recorded as its size),
   brought to [0, 1] with the generator's intensity convention (``range`` or
   ``percentile``) and clipped: that is the truth;
2. its low-res version is the degradation of the truth, quantised as the user would
   have it (uint8 for 8-bit files, uint16 otherwise);
3. it is upscaled with :func:`napari_pulse.upscale` (``samples`` samples) and compared
   with the truth in [0, 1]: PSNR and SSIM for bicubic upsampling of the low-res image,
   for one sample (the best) and for the mean of the samples; the low-res fit
   (``lr_psnr``, ``success``); the mean spread of the samples (``Result.std``) and its
   Spearman correlation with the actual error ``|mean - truth|``; where the generator has
   an expected-error model (``Result.error``, :mod:`napari_pulse.error_map`), its
   Spearman correlation with the actual error of the image ``|sample - truth|``, and its
   RMS beside the actual RMS error (a calibrated map gives about the same).

The summary holds the share of successes and the medians of everything else.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from .api import upscale
from .degrade import downscale
from .generators import load
from .imageio import PIL_SUFFIXES, TIFF_SUFFIXES, read_image
from .intensity import fit_intensity
from .metrics import psnr, spearman, ssim
from .options import Options

IMAGE_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES
COLUMNS = [
    "image",
    "height",
    "width",
    "success",
    "lr_psnr",
    "psnr_bicubic",
    "psnr_sample",
    "psnr_mean",
    "ssim_bicubic",
    "ssim_sample",
    "ssim_mean",
    "spread",
    "spread_error_spearman",
    "expected_error_spearman",
    "expected_error_rms",
    "error_rms",
    "seconds",
]
PANELS = ["low-res", "bicubic", "ours", "truth", "spread", "expected error"]
MIN_SIZE = 11  # the SSIM window


@dataclass
class ImageResult:
    """One image's CSV row and its figure panels (float arrays in [0, 1])."""

    row: dict[str, Any]
    panels: list[np.ndarray]


@dataclass
class Evaluation:
    """Per-image results, the summary row and the settings used."""

    images: list[ImageResult]
    summary: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)


def find_images(folder: str | Path, limit: int | None = None, seed: int = 0) -> list[Path]:
    """The images of ``folder`` (sorted); with ``limit``, that many chosen by ``seed``."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"folder not found: {folder}")
    if not folder.is_dir():
        raise ValueError(f"not a folder: {folder}")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if limit < len(files):
            pick = np.random.default_rng(seed).choice(len(files), size=limit, replace=False)
            files = [files[i] for i in sorted(pick)]
    return files


def center_crop(image: np.ndarray, factor: int) -> np.ndarray:
    """The central part of ``image`` whose height and width are multiples of ``factor``."""
    h, w = image.shape[:2]
    hh, ww = h - h % factor, w - w % factor
    y, x = (h - hh) // 2, (w - ww) // 2
    return image[y : y + hh, x : x + ww]


def bicubic_up(low: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Plain bicubic upsampling (the baseline) of ``(h, w[, 3])`` values in [0, 1] to
    ``size``, clipped to [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(np.atleast_3d(low).transpose(2, 0, 1)))[None]
    up = F.interpolate(t.float(), size=size, mode="bicubic", align_corners=False)
    up = up[0].clamp(0, 1).permute(1, 2, 0).numpy()
    return up if low.ndim == 3 else up[..., 0]


def evaluate_image(path: Path, options: Options) -> ImageResult:
    """Degrade, upscale and measure one high-res image (see the module docstring)."""
    raw = read_image(path)
    if not (raw.ndim == 2 or (raw.ndim == 3 and raw.shape[-1] == 3)):
        raise ValueError(
            f"{path.name}: evaluate takes single (Y, X) or (Y, X, 3) images, got shape {raw.shape}"
        )
    factor, degradation, sigma = options.factor, options.degradation, options.sigma
    hr = center_crop(raw, factor)
    if min(hr.shape[:2]) < max(MIN_SIZE, 2 * factor):
        raise ValueError(
            f"{path.name}: {raw.shape[0]}x{raw.shape[1]} pixels is too small to evaluate at "
            f"factor {factor} (need at least {max(MIN_SIZE, 2 * factor)} pixels per side)"
        )
    generator = options.generator
    gen = load(generator) if isinstance(generator, str | os.PathLike) else generator
    mode = gen.card.normalization
    truth = np.clip(fit_intensity(hr, mode).to_unit(hr), 0, 1)
    scale = 255 if raw.dtype == np.uint8 else 65535
    dtype = np.uint8 if scale == 255 else np.uint16
    low = np.rint(np.clip(downscale(truth, factor, degradation, sigma), 0, 1) * scale)
    low = low.astype(dtype)
    start = time.perf_counter()
    r = upscale(low, options=replace(options, normalization="range", rgb=truth.ndim == 3))
    seconds = time.perf_counter() - start
    low_u = low.astype(np.float32) / scale
    bicubic = bicubic_up(low_u, truth.shape[:2])
    sample = r.image.astype(np.float32) / scale
    mean = r.mean / scale
    std = r.std / scale if r.std is not None else np.zeros_like(sample)
    several = r.samples is not None
    error = None if r.error is None else r.error / scale
    miss = np.abs(sample - truth)
    row = {
        "image": path.name,
        "height": truth.shape[0],
        "width": truth.shape[1],
        "success": int(r.success),
        "lr_psnr": r.lr_psnr,
        "psnr_bicubic": psnr(bicubic, truth),
        "psnr_sample": psnr(sample, truth),
        "psnr_mean": psnr(mean, truth),
        "ssim_bicubic": ssim(bicubic, truth),
        "ssim_sample": ssim(sample, truth),
        "ssim_mean": ssim(mean, truth),
        "spread": float(std.mean()) if several else math.nan,
        "spread_error_spearman": spearman(std, np.abs(mean - truth)) if several else math.nan,
        "expected_error_spearman": math.nan if error is None else spearman(error, miss),
        "expected_error_rms": math.nan if error is None else float(np.sqrt((error**2).mean())),
        "error_rms": float(np.sqrt((miss**2).mean())),
        "seconds": seconds,
    }
    nearest = np.repeat(np.repeat(low_u, factor, axis=0), factor, axis=1)
    spread = std / std.max() if std.max() > 0 else std
    likely = np.zeros_like(sample) if error is None else error
    likely = likely / likely.max() if likely.max() > 0 else likely
    return ImageResult(row, [nearest, bicubic, sample, truth, spread, likely])


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The share of successes and the median of every other figure."""
    out: dict[str, Any] = {"image": "summary"}
    for col in COLUMNS[1:]:
        values = np.array([row[col] for row in rows], dtype=np.float64)
        if col == "success":
            out[col] = float(values.mean())
        else:
            out[col] = float(np.nanmedian(values)) if np.isfinite(values).any() else math.nan
    return out


def evaluate(
    hr_dir: str | Path,
    options: Options | None = None,
    *,
    limit: int | None = None,
    progress: Callable[[int, int, str], Any] | None = None,
    **settings: Any,
) -> Evaluation:
    """Evaluate a generator on the images of ``hr_dir``; ``progress(done, total, name)``.

    The upscale settings are an :class:`~napari_pulse.options.Options` (``options``) or its
    fields as keywords (``settings``, over ``options``): ``generator`` and ``factor`` are
    needed; ``samples`` defaults to 4; ``config`` sets the search's other settings and its
    start strategies (a warm-start bank, guided starts, a quick wave). ``limit`` evaluates
    that many images, chosen by the seed over the file names.
    """
    if options is None:
        settings = {"samples": 4, **settings}
        if "generator" not in settings or "factor" not in settings:
            raise TypeError("evaluate needs a generator and a factor")
    opts = replace(options or Options(), **settings)
    if opts.generator is None:
        raise ValueError("evaluate needs a generator")
    files = find_images(hr_dir, limit, opts.seed)
    # Check what depends on the generator now (and load it), before any image is read.
    opts.resolve(rgb=False)
    results = []
    for i, path in enumerate(files):
        if progress is not None:
            progress(i, len(files), path.name)
        results.append(evaluate_image(path, opts))
    if progress is not None:
        progress(len(files), len(files), "")
    params = {**opts.describe(), "folder": str(hr_dir), "images": len(files)}
    return Evaluation(results, summarize([r.row for r in results]), params)


def write_csv(ev: Evaluation, path: str | Path) -> None:
    """One row per image, then the summary row."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in [r.row for r in ev.images] + [ev.summary]:
            writer.writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(v: Any) -> Any:
    return f"{v:.4f}" if isinstance(v, float) else v


def _to_rgb8(x: np.ndarray, size: int) -> Image.Image:
    a = np.clip(np.rint(np.asarray(x, np.float32) * 255), 0, 255).astype(np.uint8)
    im = Image.fromarray(a if a.ndim == 3 else np.stack([a] * 3, axis=-1))
    if max(im.size) > size:
        ratio = size / max(im.size)
        im = im.resize((max(1, round(im.width * ratio)), max(1, round(im.height * ratio))))
    return im


def write_figure(ev: Evaluation, path: str | Path, max_rows: int = 16, size: int = 256) -> None:
    """A PNG: one row per image (the first ``max_rows``) of low-res (nearest), bicubic,
    ours (the best sample), truth, spread and expected error (each map scaled to its
    maximum; black where there is none), each at most ``size`` pixels."""
    rows = [[_to_rgb8(p, size) for p in r.panels] for r in ev.images[:max_rows]]
    gap, head = 4, 16
    col_w = [max(row[c].width for row in rows) for c in range(len(PANELS))]
    width = sum(col_w) + gap * (len(PANELS) + 1)
    height = head + sum(max(p.height for p in row) + gap for row in rows) + gap
    fig = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(fig)
    x = gap
    for c, label in enumerate(PANELS):
        draw.text((x, 2), label, fill=(0, 0, 0))
        x += col_w[c] + gap
    y = head
    for row in rows:
        x = gap
        for c, panel in enumerate(row):
            fig.paste(panel, (x, y))
            x += col_w[c] + gap
        y += max(p.height for p in row) + gap
    fig.save(path)
