"""Loading pickled checkpoints without running their code.

:func:`torch_load` reads ``torch.save`` files with ``weights_only=True`` (argparse
``Namespace`` entries of training checkpoints allowed as plain data).
:class:`RestrictedUnpickler` reads plain pickles: ``find_class`` answers only from an explicit
table of names (tensor rebuild functions, containers, numpy scalars and arrays, plus what a
caller adds); any other global, and any persistent id, raises :class:`UnsafeCheckpointError`
before anything is called.
"""

from __future__ import annotations

import argparse
import collections
import io
import pickle
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """A checkpoint would call something other than tensor and container constructors."""


def _refusal(source: str, what: str) -> str:
    return (
        f"refusing to load {source}: it would call {what}, which is not on the list of "
        "tensor and container constructors that a checkpoint may use. The file may be "
        "malicious, or of a format napari-pulse does not read; nothing in it was run."
    )


def torch_load(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, allowing argparse ``Namespace`` data."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    try:
        if safe_globals is None:
            return torch.load(path, map_location="cpu", weights_only=True)
        with safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines()]
        detail = next((ln for ln in lines if "Unsupported" in ln or "global" in ln.lower()), "")
        hint = "" if safe_globals else " torch >= 2.5 reads checkpoints holding argparse arguments."
        raise UnsafeCheckpointError(
            _refusal(str(path), "a function or class torch's weights-only loader does not allow")
            + (f" ({detail})" if detail else "")
            + hint
        ) from None


def _load_from_bytes(data: bytes) -> Any:
    """Stand-in for ``torch.storage._load_from_bytes``: the same bytes, weights only, on CPU."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise UnsafeCheckpointError(
                _refusal("an embedded tensor storage", "code outside tensor data")
            ) from None


def _numpy_globals() -> dict[tuple[str, str], Any]:
    scalar = np.float64(0).__reduce__()[0]
    reconstruct = np.zeros(1).__reduce__()[0]
    out: dict[tuple[str, str], Any] = {("numpy", "dtype"): np.dtype}
    out[("numpy", "ndarray")] = np.ndarray
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1 and 2 names
        out[(mod, "scalar")] = scalar
        out[(mod, "_reconstruct")] = reconstruct
    return out


def _torch_globals() -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {
        ("torch.storage", "_load_from_bytes"): _load_from_bytes,
        ("torch", "Size"): torch.Size,
    }
    for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter"):
        if hasattr(torch._utils, name):
            out[("torch._utils", name)] = getattr(torch._utils, name)
    for name in dir(torch):
        if isinstance(getattr(torch, name, None), torch.dtype):
            out[("torch", name)] = getattr(torch, name)
    return out


#: Globals any checkpoint may use: tensor rebuilding, containers, numpy scalars and arrays.
SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    **_numpy_globals(),
    **_torch_globals(),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` knows only :data:`SAFE_GLOBALS` and ``extra``."""

    def __init__(
        self,
        file: BinaryIO,
        extra: Mapping[tuple[str, str], Callable[..., Any]] | None = None,
        source: str = "this file",
    ) -> None:
        super().__init__(file)
        self._allowed = {**SAFE_GLOBALS, **(extra or {})}
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(_refusal(self._source, f"{module}.{name}")) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(_refusal(self._source, f"a persistent id {pid!r}"))


def restricted_load(
    path: str | Path, extra: Mapping[tuple[str, str], Callable[..., Any]] | None = None
) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (tensors end up on the CPU)."""
    with open(path, "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation
        return RestrictedUnpickler(f, extra, source=str(path)).load()
