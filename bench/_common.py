"""Shared bits of the benchmarks: data locations, splits, PSNR, a machine line."""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

import numpy as np
import torch

SHARED = Path(os.environ.get("NAPARI_PULSE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATA = SHARED / "data"


def split(folder: Path, n: int, seed: int = 2026, pattern: str = "*") -> list[Path]:
    """``n`` files of ``folder``, chosen by a fixed seed over sorted names."""
    files = sorted(folder.glob(pattern))
    if not files:
        raise SystemExit(f"no data in {folder}: these benchmarks need ../shared/data")
    rng = np.random.default_rng(seed)
    return [
        files[i] for i in sorted(rng.choice(len(files), size=min(n, len(files)), replace=False))
    ]


def psnr(mse: float) -> float:
    return 10 * math.log10(1 / max(mse, 1e-10))


def machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
