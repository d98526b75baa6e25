"""The public entry points of the engine, :func:`upscale` and :func:`iter_upscale`, and the
check of the user's image. Options are checked by :class:`~napari_pulse.options.Options`;
the work is a pipeline of stages (:mod:`napari_pulse.pipeline`)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np

from . import pipeline
from .events import Cancelled, Finished, Progress
from .intensity import ACCEPTED_DTYPES
from .layout import has_single_channel
from .options import Options, merged, pick_device
from .result import Result

__all__ = ["Options", "Result", "iter_upscale", "pick_device", "upscale"]


def check_image(image: Any, rgb: bool | None) -> tuple[np.ndarray, bool]:
    """The image as an array, and whether its last axis is RGB; clear errors otherwise."""
    if isinstance(image, np.ndarray):
        arr = image
    else:
        try:
            arr = np.asarray(image)
        except Exception as exc:  # noqa: BLE001 - anything not array-like gets the same message
            raise TypeError(f"image must be an array, got {type(image).__name__}") from exc
    if arr.dtype == bool:
        raise TypeError(
            "image is a boolean mask; upscaling needs intensities (uint8, uint16, int16 or float)."
        )
    if arr.dtype not in [np.dtype(d) for d in ACCEPTED_DTYPES]:
        hint = (
            " Integer arrays other than uint8/uint16/int16 are usually label images, which this "
            "tool does not upscale; convert to float32 if these are intensities."
            if np.issubdtype(arr.dtype, np.integer)
            else ""
        )
        raise TypeError(f"image dtype {arr.dtype} is not supported.{hint}")
    if arr.ndim < 2:
        raise ValueError(f"image must have at least 2 dimensions (Y, X), got shape {arr.shape}")
    if rgb is None:
        if arr.ndim >= 3 and arr.shape[-1] == 4:
            raise ValueError(
                "image looks like RGBA (last axis of 4); drop the alpha channel first, or pass "
                "rgb=False to treat the last axis as the X axis."
            )
        rgb = arr.ndim >= 3 and arr.shape[-1] == 3
    if rgb and arr.shape[-1] != 3:
        raise ValueError(f"rgb=True needs a last axis of 3 (R, G, B), got shape {arr.shape}")
    spatial = arr.shape[-3:-1] if rgb or has_single_channel(arr.shape, rgb) else arr.shape[-2:]
    if len(spatial) < 2:
        raise ValueError(f"an RGB image needs (Y, X, 3), got shape {arr.shape}")
    if arr.size == 0 or min(spatial) < 2:
        raise ValueError(
            f"image is too small to upscale: {spatial[0]}x{spatial[1]} pixels (need 2x2 or more)"
        )
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError("image contains NaN or infinite values; replace them before upscaling.")
    return arr, bool(rgb)


def iter_upscale(
    image: Any, *, options: Options | None = None, **settings: Any
) -> Generator[Progress | Finished, None, None]:
    """:func:`upscale` as a stream of :class:`Progress` events ending with :class:`Finished`.

    Takes the keywords of :func:`upscale` (``progress`` and ``cancel`` aside), or an
    :class:`~napari_pulse.options.Options` as ``options`` (``settings`` then override its
    fields). Everything is checked before the stream is returned. Stop iterating (or
    ``close()`` the generator) to cancel; that takes effect at the next optimiser step,
    and nothing of the caller's is changed.
    """
    opts = merged(options, settings)
    arr, rgb = check_image(image, opts.rgb)
    return pipeline.stream(arr, rgb, opts.resolve(rgb))


def upscale(
    image: Any,
    *,
    progress: Callable[[Progress], Any] | None = None,
    cancel: Callable[[], bool] | None = None,
    options: Options | None = None,
    **settings: Any,
) -> Result:
    """Upscale ``image`` by ``factor`` with a latent search in ``generator``.

    ``image``: ``(Y, X)`` grayscale or ``(Y, X, 3)`` RGB, uint8/uint16/int16/float; leading
    axes (``(..., Y, X[, 3])``, e.g. T or Z) are planes, each upscaled on its own.
    ``settings`` are the fields of :class:`~napari_pulse.options.Options`: ``generator``
    (a registered name, see ``napari_pulse.generators.available()``, a path to a weights
    file, or a :class:`DomainGenerator`; None picks the default for the image's channels),
    ``factor``, ``degradation`` (and ``sigma``), ``steps``, ``restarts``, ``samples``,
    ``seed``, ``device``, ``normalization``, ``rgb``, ``eps``, ``overlap``, ``config``
    (a :class:`~napari_pulse.search.SearchConfig`: finer settings and start strategies),
    ``mode``, ``intermediate`` and ``realism``; or pass an ``options`` object.
    ``progress`` is called with every :class:`Progress` event; ``cancel`` (for example
    ``threading.Event().is_set``) is polled at every optimiser step and, when it returns
    True, :class:`Cancelled` is raised.
    """
    stream = iter_upscale(image, options=options, **settings)
    try:
        for event in stream:
            if isinstance(event, Finished):
                return event.result
            if progress is not None:
                progress(event)
            if cancel is not None and cancel():
                raise Cancelled("upscale cancelled")
    finally:
        stream.close()
    raise RuntimeError("the upscale stream ended without a result")  # pragma: no cover
