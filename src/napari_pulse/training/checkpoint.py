"""Reading a training checkpoint to resume from, with one clear error for a bad one."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

_BAD = (
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    RuntimeError,
    EOFError,
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
    IndexError,
)


def resume_from(path: Path, device: torch.device | str, restore: Callable[[dict], Any]) -> Any:
    """``restore(state)`` for the checkpoint at ``path`` (read weights-only: never code);
    a checkpoint that cannot be read or restored raises a ValueError that says how to
    start afresh."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(state, dict):
            raise TypeError(f"it holds a {type(state).__name__}, not a checkpoint")
        return restore(state)
    except _BAD as exc:
        raise ValueError(
            f"cannot resume from {path}: {_reason(exc)}. It is damaged, or was not written by "
            "this command with these settings; move it away (or delete it) to start afresh."
        ) from None


def _reason(exc: BaseException) -> str:
    """What is wrong, in our words: torch's own messages about reading a file suggest
    loading it with code execution allowed, which must never reach a user as advice."""
    if isinstance(exc, pickle.UnpicklingError | zipfile.BadZipFile | RuntimeError | EOFError):
        return f"it is not a readable checkpoint ({type(exc).__name__})"
    if isinstance(exc, KeyError):
        return f"it lacks {exc}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200] if "weights_only" not in text else type(exc).__name__
