"""Turn a :class:`~napari_pulse.api.Result` into napari layer-data tuples.

Pure functions of plain values (no napari, no Qt), so they are tested without a display.

Geometry: napari puts the centre of data pixel ``i`` at world ``t + i * s`` and the pixel
covers ``[t + (i - 1/2) s, t + (i + 1/2) s]``. A result pixel is ``s / f`` wide; for the
result's outer corners to sit on the source's, its first centre must be half a result pixel
inside the source's first corner: ``t_out = t - s/2 + (s/f)/2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: The colormap of the ``spread`` layer: dark = all samples agree, bright = invented.
SPREAD_COLORMAP = "magma"


def result_name(source: str, factor: int, generator: str) -> str:
    return f"{source} x{factor} ({generator})"


def upscaled_geometry(
    scale: Sequence[float],
    translate: Sequence[float],
    factor: int,
    offset: Sequence[int] | None = None,
    n_spatial: int = 2,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(scale, translate)`` of a result whose last ``n_spatial`` axes are ``factor`` times
    finer than the source's, and which starts at data index ``offset`` of the source.

    Leading (plane) axes keep their scale; ``offset`` there selects the plane(s).
    """
    scale = [float(s) for s in scale]
    translate = [float(t) for t in translate]
    if len(scale) != len(translate):
        raise ValueError("scale and translate must have the same length")
    offset = [0] * len(scale) if offset is None else [int(o) for o in offset]
    out_scale, out_translate = [], []
    for axis, (s, t, o) in enumerate(zip(scale, translate, offset, strict=True)):
        t0 = t + o * s  # world centre of the first source pixel used
        if axis >= len(scale) - n_spatial:
            out_scale.append(s / factor)
            out_translate.append(t0 - s / 2 + s / factor / 2)
        else:
            out_scale.append(s)
            out_translate.append(t0)
    return tuple(out_scale), tuple(out_translate)


def outer_corners(
    shape: Sequence[int], scale: Sequence[float], translate: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates of the low and high outer corners of an image's last axes."""
    s, t = np.asarray(scale, float), np.asarray(translate, float)
    n = np.asarray(shape[: len(s)], float)
    return t - s / 2, t + (n - 0.5) * s


def result_layers(
    result: Any,
    *,
    source_name: str,
    generator: str,
    factor: int,
    scale: Sequence[float],
    translate: Sequence[float],
    rgb: bool = False,
    offset: Sequence[int] | None = None,
    colormap: Any = None,
    contrast_limits: Sequence[float] | None = None,
) -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """The result layer, a ``... spread`` layer when there are several samples, and an
    ``... expected error`` layer where the generator has an error model (both hidden).

    ``scale``/``translate`` are the source layer's (one entry per non-RGB axis);
    ``offset`` is where ``result.image`` starts in the source's data indices (e.g. the
    plane on screen of a stack). The source's colormap and contrast limits are carried
    over for grayscale images; the metadata holds the parameters and quality figures.
    """
    name = result_name(source_name, factor, generator)
    out_scale, out_translate = upscaled_geometry(scale, translate, factor, offset)
    metadata = {
        "napari_pulse": True,
        "source": source_name,
        "params": dict(result.params),
        "lr_psnr": float(result.lr_psnr),
        "lr_psnr_tiles": np.asarray(result.lr_psnr_tiles).tolist(),
        "success": bool(result.success),
    }
    if getattr(result, "sample_lr_psnr", None):
        metadata["sample_lr_psnr"] = [float(p) for p in result.sample_lr_psnr]
    if getattr(result, "ood_tiles", None) is not None:
        metadata["ood_score"] = float(result.ood_score)
        metadata["ood_tiles"] = np.asarray(result.ood_tiles).tolist()
    if getattr(result, "atypical_tiles", None) is not None:
        metadata["atypicality"] = float(result.atypicality)
        metadata["atypical_tiles"] = np.asarray(result.atypical_tiles).tolist()
    if getattr(result, "domain_tiles", None) is not None:
        metadata["in_domain"] = bool(result.in_domain)
        metadata["domain_score"] = float(result.domain_score)
        metadata["domain_tiles"] = np.asarray(result.domain_tiles).tolist()
    meta = _image_meta(name, out_scale, out_translate, metadata, rgb, colormap, contrast_limits)
    layers = [(result.image, meta, "image")]
    maps = (
        ("std", "spread", "local spread across samples (bright = invented)"),
        ("error", "expected error", "expected error of the result (bright = likely wrong)"),
    )
    for attr, label, what in maps:
        values = getattr(result, attr, None)
        if values is None:
            continue
        values = np.asarray(values, dtype=np.float32)
        if rgb:
            values = values.mean(axis=-1)
        map_meta = {
            "name": f"{name} {label}",
            "scale": out_scale,
            "translate": out_translate,
            "metadata": {
                "napari_pulse": True,
                "source": source_name,
                "what": what,
                "params": dict(result.params),
            },
            "colormap": SPREAD_COLORMAP,
            "visible": False,  # shown on demand: on top, it would hide the result
        }
        layers.append((values, map_meta, "image"))
    return layers


def preview_layer(
    image: np.ndarray,
    *,
    source_name: str,
    generator: str,
    factor: int,
    scale: Sequence[float],
    translate: Sequence[float],
    rgb: bool = False,
    offset: Sequence[int] | None = None,
    colormap: Any = None,
    contrast_limits: Sequence[float] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The live-preview layer: where the result will be, named as a preview."""
    out_scale, out_translate = upscaled_geometry(scale, translate, factor, offset)
    name = f"{result_name(source_name, factor, generator)} (preview)"
    metadata = {"napari_pulse_preview": True, "source": source_name}
    meta = _image_meta(name, out_scale, out_translate, metadata, rgb, colormap, contrast_limits)
    return image, meta


def _image_meta(
    name: str,
    scale: Any,
    translate: Any,
    metadata: dict[str, Any],
    rgb: bool,
    colormap: Any,
    contrast_limits: Sequence[float] | None,
) -> dict[str, Any]:
    """Layer keywords at the upscaled place, with the source's display for grayscale."""
    meta: dict[str, Any] = {
        "name": name,
        "scale": scale,
        "translate": translate,
        "metadata": metadata,
        "rgb": bool(rgb),
    }
    if not rgb:
        if colormap is not None:
            meta["colormap"] = colormap
        if contrast_limits is not None:
            meta["contrast_limits"] = [float(c) for c in contrast_limits]
    return meta
