"""A batch's inputs: files, globs and folders expanded to a list of images, each with its
output names; and reading one, TIFF/PNG/JPEG or a zarr / OME-Zarr array."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..imageio import PIL_SUFFIXES, TIFF_SUFFIXES, read_image
from ..writing import tiff_outputs

IMAGE_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES


def is_zarr(path: Path) -> bool:
    """Whether ``path`` is a zarr store (a folder named ``*.zarr`` or holding zarr metadata)."""
    if not path.is_dir():
        return False
    marks = (".zarray", ".zgroup", "zarr.json")
    return path.suffix.lower() == ".zarr" or any((path / m).exists() for m in marks)


def _is_image(path: Path) -> bool:
    """An image a folder or a glob holds (hidden files, such as ``._x.tif`` that macOS
    leaves on shares, are not)."""
    if path.name.startswith("."):
        return False
    return is_zarr(path) or (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


@dataclass(frozen=True)
class Item:
    """One input of a batch and where its outputs go (OUTDIR/<input stem>.tif and its
    companions, or OUTDIR/<input stem>.zarr)."""

    source: Path
    outdir: Path

    @property
    def stem(self) -> str:
        return self.source.stem if self.source.suffix else self.source.name

    @property
    def zarr_out(self) -> Path:
        return self.outdir / f"{self.stem}.zarr"

    def tiff_outs(self, kinds: tuple[str, ...]) -> list[Path]:
        """The TIFF set with companions of ``kinds`` (:func:`~napari_pulse.writing.
        companion_kinds`)."""
        return tiff_outputs(self.outdir / f"{self.stem}.tif", kinds)

    def outputs(self, kinds: tuple[str, ...]) -> list[Path]:
        """Every path this input may write."""
        return [*self.tiff_outs(kinds), self.zarr_out]


def expand(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files, globs and folders as a list of absolute image paths, in the order given (a
    folder's and a glob's images sorted by name; a folder is not searched below its top
    level). A file named explicitly is kept whatever its suffix (reading it reports what is
    wrong); an input that matches nothing (a folder without images too) is an error."""
    found: list[Path] = []
    for raw in inputs:
        text = os.fspath(raw)
        path = Path(text)
        if path.exists():
            if path.is_dir() and not is_zarr(path):
                images = sorted(p for p in path.iterdir() if _is_image(p))
                if not images:
                    raise FileNotFoundError(f"no images (TIFF, PNG, JPEG or zarr) in {path}")
                found += images
            else:
                found.append(path)
            continue
        if glob.has_magic(text):
            matched = sorted(Path(p) for p in glob.glob(text))
            images = [p for p in matched if _is_image(p)]
            if not images:
                raise FileNotFoundError(f"no image matches {text!r}")
            found += images
            continue
        raise FileNotFoundError(f"input not found: {text}")
    seen: set[Path] = set()
    out = []
    for p in found:
        key = p.resolve()  # workers elsewhere have their own working directories
        if key not in seen:
            seen.add(key)
            out.append(key)
    if not out:
        raise FileNotFoundError("no input images found (TIFF, PNG, JPEG or zarr)")
    return out


def plan_items(paths: list[Path], outdir: Path, kinds: tuple[str, ...]) -> list[Item]:
    """The items of ``paths``; refuses two inputs that would write the same output, an
    output that is an input, and an OUTDIR that holds inputs (a rerun would take the
    outputs for inputs)."""
    items = [Item(p, outdir) for p in paths]
    owner: dict[Path, Path] = {}
    inputs = {p.resolve() for p in paths}
    if any(p.parent == outdir.resolve() for p in inputs):
        raise ValueError(f"OUTDIR {outdir} holds inputs; choose another folder for the outputs")
    for item in items:
        for out in item.outputs(kinds):
            key = out.resolve()
            if key in inputs:
                raise ValueError(f"refusing to write {out}: it is an input; choose another OUTDIR")
            if key in owner:
                raise ValueError(
                    f"{owner[key]} and {item.source} would both write {out.name}; "
                    "rename one or run them into different OUTDIRs"
                )
            owner[key] = item.source
    return items


def read(path: Path) -> np.ndarray:
    """An input as an array: an image file (:func:`~napari_pulse.imageio.read_image`), or a
    zarr array (for an OME-Zarr group, its full-resolution level; for another group, its
    ``image`` array or its only array)."""
    if not is_zarr(path):
        return read_image(path)
    try:
        array = np.asarray(open_zarr(path)[...])
    except (ValueError, FileNotFoundError):
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input
        raise ValueError(f"could not read {path} as zarr: {exc}") from exc
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


def open_zarr(path: Path) -> Any:
    """The array a zarr input stands for (see :func:`read`), opened lazily."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"could not open {path} as zarr: {exc}") from exc
    if hasattr(node, "shape"):
        return node
    attrs = dict(node.attrs)
    scales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if scales:
        return node[scales[0]["datasets"][0]["path"]]
    names = sorted(name for name, _ in node.arrays())
    if "image" in names:
        return node["image"]
    if len(names) == 1:
        return node[names[0]]
    raise ValueError(
        f"{path} is a zarr group with arrays {names or 'none'}; point at one array "
        "(e.g. group.zarr/name) or use an OME-Zarr image"
    )
