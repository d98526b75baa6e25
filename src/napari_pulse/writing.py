"""Writing a result where the commands put it: a TIFF set (OUT, then ``OUT_samples`` and
``OUT_std`` with several samples, and ``OUT_error`` where an expected-error model exists),
or one zarr group for large outputs, each with the same JSON metadata (parameters, fit
quality, the input, the caveat), and each written atomically."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import error_map
from .generators import default_for, load
from .imageio import read_tiff_metadata, write_tiff_atomic
from .options import Options
from .result import Result

CAVEAT = (
    "The output is plausible detail that the generator invents consistently with the "
    "input (it downscales back to the input); it is not ground truth and must not be "
    "used for measurement or diagnosis."
)
#: The zarr output's chunks along its last two spatial axes (high-res pixels).
ZARR_CHUNK = 1024
#: The zarr group attribute that holds the metadata.
ZARR_ATTR = "napari_pulse"


def companion_kinds(options: Options) -> tuple[str, ...]:
    """The companions an upscale with ``options`` may write beside OUT: ``samples`` and
    ``std`` with several samples; ``error`` where its generator (when none is named, the
    default for either kind of image) has an expected-error model at its factor and
    operator (:mod:`napari_pulse.error_map`)."""
    kinds = ("samples", "std") if options.samples > 1 else ()
    names = (
        [options.generator] if options.generator is not None else [default_for(c) for c in (1, 3)]
    )
    for g in names:
        try:
            gen = load(g) if isinstance(g, str | os.PathLike) else g
        except Exception:  # noqa: BLE001 - not installed or unreadable: upscale will say so
            continue
        if error_map.find(gen, int(options.factor), options.degradation, options.sigma):
            return (*kinds, "error")
    return kinds


def tiff_outputs(out: Path, kinds: tuple[str, ...]) -> list[Path]:
    """OUT, then its companions of ``kinds`` (:func:`companion_kinds`): ``OUT_<kind>``."""
    return [out] + [out.with_name(f"{out.stem}_{kind}{out.suffix}") for kind in kinds]


def _companions(result: Result) -> dict[str, Any]:
    """The result's arrays beside its image, by the name of their file or zarr array."""
    arrays = {}
    if result.samples is not None and result.std is not None:
        arrays |= {"samples": result.samples, "std": result.std}
    if result.error is not None:
        arrays["error"] = result.error
    return arrays


def metadata(result: Result, source: Path, content: str, **extra: Any) -> dict[str, Any]:
    """What an output file records: the result's parameters and scores, its input, what it
    holds (``image``, ``samples``, ``std`` or ``error``) and the caveat; ``extra`` fields
    added."""
    return {
        **result.params,
        "lr_psnr": result.lr_psnr,
        "lr_mse": result.lr_mse,
        "success": bool(result.success),
        "sample_lr_psnr": list(result.sample_lr_psnr),
        "ood_score": result.ood_score,
        "atypicality": result.atypicality,
        "in_domain": result.in_domain,
        "expected_error": None if result.error is None else result.expected_rms()[1],
        "domain_score": result.domain_score,
        "input": str(source.resolve()),
        "content": content,
        "note": CAVEAT,
        **extra,
    }


def write_tiffs(result: Result, source: Path, outs: list[Path], **extra: Any) -> list[Path]:
    """Companions first, OUT last: OUT existing means the whole set was written. ``outs``
    is :func:`tiff_outputs`; a companion the result lacks is not written. Returns the
    paths written, OUT first."""
    arrays, written = _companions(result), [outs[0]]
    for path in outs[1:]:
        kind = path.stem.rsplit("_", 1)[1]
        if kind in arrays:
            write_tiff_atomic(path, arrays[kind], metadata(result, source, kind, **extra))
            written.append(path)
    write_tiff_atomic(outs[0], result.image, metadata(result, source, "image", **extra))
    return written


def write_zarr(result: Result, source: Path, out: Path, **extra: Any) -> None:
    """One zarr group at ``out``: arrays ``image`` (and ``samples``, ``std`` with several
    samples, ``error`` where it exists), chunked over the spatial axes, with the metadata
    in the group's ``napari_pulse`` attribute. Written beside ``out`` under a temporary
    name and renamed into place, so ``out`` is either absent, the old group or the whole
    new one."""
    arrays = {"image": result.image, **_companions(result)}
    with atomic_group(out) as group:
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            _fill(new_array(group, name, array.shape, array.dtype), array)
        set_metadata(group, metadata(result, source, "image", **extra))


@contextlib.contextmanager
def atomic_group(out: Path) -> Iterator[Any]:
    """A new zarr group to fill, written beside ``out`` under a temporary name and renamed
    to ``out`` when the block ends without an error (removed otherwise)."""
    import zarr

    if not out.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {out.parent}")
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield zarr.open_group(str(tmp), mode="w")
        _replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def new_array(group: Any, name: str, shape: tuple[int, ...], dtype: Any, chunk: int = 0) -> Any:
    """An empty array of ``group`` chunked as :func:`chunks` says (``chunk``: the spatial
    chunk, :data:`ZARR_CHUNK` when 0)."""
    make = getattr(group, "create_array", None) or group.create_dataset  # zarr 3, zarr 2
    return make(name, shape=shape, chunks=chunks(shape, chunk or ZARR_CHUNK), dtype=dtype)


def set_metadata(group: Any, meta: dict[str, Any]) -> None:
    """The metadata as the group's ``napari_pulse`` attribute (NaN and infinity kept)."""
    group.attrs[ZARR_ATTR] = json.loads(json.dumps(meta, allow_nan=True), parse_constant=str)


def chunks(shape: tuple[int, ...], chunk: int = ZARR_CHUNK) -> tuple[int, ...]:
    """One plane per chunk along leading axes, ``chunk`` pixels along Y and X (the last
    two axes, or the two before a channel axis: RGB, or a grayscale image's axis of 1)."""
    y_axis = _y_axis(shape)
    out = [1] * len(shape)
    for axis in range(y_axis, len(shape)):
        out[axis] = min(shape[axis], chunk) if axis < y_axis + 2 else shape[axis]
    return tuple(out)


def _y_axis(shape: tuple[int, ...]) -> int:
    """The Y axis of an output: the third from last before a channel axis (3 for RGB, 1
    for a grayscale image kept as ``(..., Y, X, 1)``), else the second from last."""
    channel = len(shape) >= 3 and shape[-1] in (1, 3)
    return len(shape) - 3 if channel else len(shape) - 2


def _fill(z: Any, array: np.ndarray) -> None:
    """Write ``array`` into ``z`` a band of chunk rows at a time."""
    y_axis = _y_axis(array.shape)
    step = z.chunks[y_axis]
    for y in range(0, array.shape[y_axis], step):
        band = (slice(None),) * y_axis + (slice(y, y + step),)
        z[band] = array[band]


def _replace_dir(tmp: Path, out: Path) -> None:
    """Put the folder ``tmp`` at ``out``; an old ``out`` is moved away first, then deleted."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.old")
    os.replace(out, old)
    os.replace(tmp, out)
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


def read_metadata(out: Path) -> dict[str, Any] | None:
    """The metadata of a finished output (a TIFF of ours, or a zarr group of ours); None
    when ``out`` is absent or not one of ours."""
    try:
        if out.suffix == ".zarr":
            import zarr

            meta = zarr.open_group(str(out), mode="r").attrs.get(ZARR_ATTR)
        else:
            meta = read_tiff_metadata(out)
    except Exception:  # noqa: BLE001 - anything unreadable is not a finished output
        return None
    return meta if isinstance(meta, dict) else None
