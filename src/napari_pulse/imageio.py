"""Reading input images and writing results as TIFF with JSON metadata, atomically."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import tifffile
from PIL import Image, ImageOps

TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg")
# Pillow decodes 16-bit RGB(A) PNGs to 8 bits; these raw modes give that away.
_PIL_16BIT_COLOR = ("RGB;16B", "RGBA;16B", "LA;16B")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a TIFF, PNG or JPEG as an array: ``(..., Y, X)`` grayscale or ``(..., Y, X, 3)`` RGB.

    Keeps the stored dtype (8 or 16 bit). Palette images become RGB; an alpha channel is
    dropped only when fully opaque, otherwise a ValueError says so.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input file not found: {path}")
    if not path.is_file():
        raise ValueError(f"input is not a file: {path}")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        arr = _read_tiff(path)
    elif suffix in PIL_SUFFIXES:
        arr = _read_pil(path)
    else:
        known = ", ".join(TIFF_SUFFIXES + PIL_SUFFIXES)
        raise ValueError(f"cannot read {path.name!r}: unknown suffix {path.suffix!r} (use {known})")
    arr = _drop_opaque_alpha(arr, path)
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def _read_tiff(path: Path) -> np.ndarray:
    """Every plane of a TIFF: one series as it is stored; several series (as a page-by-page
    writer leaves them) of one shape and dtype as a stack along a new first axis. Series
    of different shapes are refused with what was found: no plane is dropped silently."""
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series
            if len(series) <= 1:
                return tif.asarray()
            found = {(tuple(s.shape), str(s.dtype)) for s in series}
            if len(found) == 1:
                return np.stack([s.asarray() for s in series])
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input file
        raise ValueError(f"could not read {path} as TIFF: {exc}") from exc
    listed = "; ".join(f"{'x'.join(map(str, sh))} {dt}" for sh, dt in sorted(found))
    raise ValueError(
        f"{path} holds {len(series)} image series of different shapes or types ({listed}); "
        "save the planes to upscale as one stack, or one file each"
    )


def _read_pil(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if any(tile.args in _PIL_16BIT_COLOR for tile in im.tile):
                raise ValueError(
                    f"{path} is a 16-bit colour PNG, which Pillow can only read as 8 bits; "
                    "save it as a 16-bit TIFF instead."
                )
            im = ImageOps.exif_transpose(im)  # what viewers show for rotated JPEGs
            return _pil_to_array(im)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input file
        raise ValueError(f"could not read {path} as an image: {exc}") from exc


def _pil_to_array(im: Image.Image) -> np.ndarray:
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode == "PA":
        im = im.convert("RGBA")
    elif im.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("L" if im.mode == "1" else "RGB")
    arr = np.asarray(im)
    if im.mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        arr = arr.astype(np.uint16)  # 16-bit grayscale as some Pillow versions report it
    return np.array(arr)  # writable copy


def _drop_opaque_alpha(arr: np.ndarray, path: Path) -> np.ndarray:
    """``(..., Y, X, 4)`` RGBA or a 2-channel gray+alpha: drop alpha if fully opaque."""
    if arr.ndim < 3 or arr.shape[-1] not in (2, 4) or not _has_alpha(arr, path):
        return arr
    opaque = np.iinfo(arr.dtype).max if np.issubdtype(arr.dtype, np.integer) else 1.0
    if not np.all(arr[..., -1] == opaque):
        raise ValueError(
            f"{path} has transparent pixels (an alpha channel that is not fully opaque); "
            "flatten it onto a background or remove the alpha channel first."
        )
    return np.ascontiguousarray(arr[..., :-1] if arr.shape[-1] == 4 else arr[..., 0])


def _has_alpha(arr: np.ndarray, path: Path) -> bool:
    if path.suffix.lower() in PIL_SUFFIXES:
        return True  # Pillow arrays only end in 2 or 4 channels for LA / RGBA
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        return bool(page.samplesperpixel == arr.shape[-1] and page.extrasamples)


def write_tiff_atomic(
    path: str | os.PathLike[str], array: np.ndarray, metadata: dict[str, Any]
) -> None:
    """Write ``array`` as a TIFF whose ImageDescription is ``metadata`` as JSON.

    RGB when the last axis is 3. The file is written next to ``path`` under a temporary
    name and renamed into place, so ``path`` is never left half-written.
    """
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise ValueError(f"output must be a .tif or .tiff file, got {path.name!r}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {path.parent}")
    array = np.asarray(array)
    rgb = array.ndim >= 3 and array.shape[-1] == 3
    # Separators " : " keep '"shape":' out of our JSON, so tifffile never mistakes it for
    # its own shaped description (written as a second tag, which keeps N-d shapes on read).
    description = json.dumps(metadata, separators=(", ", " : "), allow_nan=True)
    write_atomic(
        path,
        lambda fh: tifffile.imwrite(
            fh,
            array,
            photometric="rgb" if rgb else "minisblack",
            description=description,
            metadata={},
        ),
    )


def write_atomic(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """``write(file)`` to a new temporary name beside ``path``, flushed to disk, then
    renamed to ``path``: a crash leaves the old file or none, never a part of the new one."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_tiff_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata dict that :func:`write_tiff_atomic` stored in ``path``."""
    with tifffile.TiffFile(path) as tif:
        description = tif.pages[0].description
    try:
        meta = json.loads(description)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} has no napari-pulse JSON metadata") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{path} has no napari-pulse JSON metadata")
    return meta
