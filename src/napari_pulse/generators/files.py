"""Generators from files: the reader is chosen by suffix, then by content.

- ``.safetensors``: our native format (:mod:`.native`);
- ``.pt`` / ``.pth`` / ``.ckpt`` / ``.tar``: a ``torch.save`` file, read with
  ``weights_only=True``: a rosinality/stylegan2-pytorch checkpoint (:mod:`.rosinality`) or a
  DCGAN64 state dict such as gan-face-generate's ``weights.tar`` (:mod:`.dcgan`);
- ``.pkl``: an NVlabs stylegan2-ada-pytorch network pickle (:mod:`.nvlabs`).

A file with another suffix is recognised by its first bytes (zip: ``torch.save``; a JSON
header: safetensors; a pickle: NVlabs).
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

from safetensors import SafetensorError

from .base import DomainGenerator
from .safe_pickle import UnsafeCheckpointError

NATIVE_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".tar")
PICKLE_SUFFIXES = (".pkl", ".pickle")
SUFFIXES = NATIVE_SUFFIXES + TORCH_SUFFIXES + PICKLE_SUFFIXES
FORMATS_HELP = (
    ".safetensors (napari-pulse), .pt/.pth (rosinality/stylegan2-pytorch, or a DCGAN64 state "
    "dict like gan-face-generate's weights.tar) or .pkl (NVlabs stylegan2-ada-pytorch)"
)


def looks_like_path(name: str | os.PathLike) -> bool:
    """Whether ``name`` is meant as a file rather than a registered name."""
    if isinstance(name, os.PathLike):
        return True
    return os.sep in name or "/" in name or Path(name).suffix.lower() in SUFFIXES


def _sniff(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n < 100_000_000:
            return "native"
    if head[:1] == b"\x80":  # a pickle, protocol >= 2 (or a legacy torch.save file)
        return "pickle"
    return None


def detect_format(path: str | Path) -> str:
    """``native``, ``torch`` or ``pickle`` for a generator file; ValueError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"generator file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in NATIVE_SUFFIXES:
        return "native"
    if suffix in TORCH_SUFFIXES:
        return "torch"
    if suffix in PICKLE_SUFFIXES:
        return "pickle"
    kind = _sniff(path)
    if kind is None:
        raise ValueError(f"{path.name}: not a generator file napari-pulse reads: {FORMATS_HELP}")
    return kind


#: What readers raise on a damaged or foreign file: turned into a ValueError naming it.
READ_ERRORS = (
    SafetensorError,
    json.JSONDecodeError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    struct.error,
    UnicodeDecodeError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    RuntimeError,
    EOFError,
    OverflowError,
    RecursionError,
)


def load_file(path: str | os.PathLike, layout: str = "w+") -> DomainGenerator:
    """A frozen, search-ready generator from any supported file (see the module docstring).

    A damaged, truncated, empty or malformed file raises a ValueError naming the file and
    what is wrong (never a reader's own exception)."""
    path = Path(path)
    kind = detect_format(path)
    if path.stat().st_size == 0:
        raise ValueError(f"{path.name}: the file is empty")
    try:
        model = _read(path, kind, layout)
    except ValueError as exc:
        if path.name in str(exc) or isinstance(exc, UnsafeCheckpointError):
            raise
        raise ValueError(f"{path.name}: {exc}") from exc
    except READ_ERRORS as exc:
        what = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        raise ValueError(
            f"{path.name}: not a readable {kind} generator file (damaged or truncated?): "
            f"{what[:300]}"
        ) from exc
    model.source_file = path  # where companions (an encoder) are looked for
    return model.eval().requires_grad_(False)


def _read(path: Path, kind: str, layout: str) -> DomainGenerator:
    from . import dcgan, native, nvlabs, rosinality
    from .safe_pickle import torch_load

    if kind == "native":
        model: DomainGenerator = native.load_native(path, layout=layout)
    elif kind == "pickle":
        model = nvlabs.load_nvlabs(path, layout=layout)
    else:
        obj = torch_load(path)
        if rosinality.is_rosinality(obj):
            model = rosinality.load_rosinality(path, layout=layout, checkpoint=obj)
        elif dcgan.is_dcgan(obj):
            model = dcgan.load_dcgan_file(path, checkpoint=obj)
        else:
            keys = ", ".join(sorted(map(str, obj))[:8]) if isinstance(obj, dict) else type(obj)
            raise ValueError(
                f"{path.name}: a torch file, but neither a rosinality StyleGAN2 checkpoint "
                f"('g_ema') nor a DCGAN64 state dict (found: {keys})"
            )
    return model
