"""The benchmarks' shared harness: arguments, the machine line, timing, input sets, reports.

Every script builds its parser with :func:`parser` (``--threads`` always; ``--n``,
``--generator``/``--factor`` and the search options of the ``napari-pulse`` command line,
plus ``--set FIELD=VALUE`` for any finer :class:`~napari_pulse.search.SearchConfig` field,
when it asks for them), calls :func:`begin` (threads set, the machine line printed), turns
the arguments into an :class:`~napari_pulse.options.Options` with :func:`options`, times
with :func:`timed` and prints figures with :func:`report`, one line each.

Input sets are made here too, from fixed seeds, so that every script that says
"generator images" or "real faces" means the same images.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

SHARED = Path(os.environ.get("NAPARI_PULSE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATA = SHARED / "data"
#: PULSE's success threshold on the low-res MSE (the search's default eps).
EPS = 2e-3


# -- arguments ----------------------------------------------------------------------------


def parser(
    doc: str | None,
    *,
    n: int | None = None,
    generator: str | None = None,
    factor: int | None = None,
    search: bool = False,
    samples: int = 1,
) -> argparse.ArgumentParser:
    """A parser with ``--threads``; ``--n`` (inputs), ``--generator`` and ``--factor`` when
    given defaults; with ``search``, every search option of ``napari-pulse upscale`` and
    ``--set``."""
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: a shared machine)"
    )
    if n is not None:
        p.add_argument("--n", type=int, default=n, help="number of inputs (default: %(default)s)")
    if generator is not None:
        p.add_argument("--generator", default=generator, help="default: %(default)s")
    if factor is not None:
        p.add_argument("--factor", type=int, default=factor, help="default: %(default)s")
    if search:
        from napari_pulse.cli_options import add_search_arguments

        add_search_arguments(p, samples=samples)
        p.add_argument(
            "--set",
            metavar="FIELD=VALUE",
            nargs="+",
            default=[],
            help="finer search settings, e.g. --set keep=8 explore_steps=10",
        )
    return p


def begin(args: argparse.Namespace) -> None:
    """Set the torch threads and print the machine line."""
    torch.set_num_threads(args.threads)
    print("machine:", machine())


def machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )


def options(args: argparse.Namespace, **fixed: Any):
    """The upscale :class:`~napari_pulse.options.Options` of parsed search arguments
    (``fixed`` sets others), with the ``--set`` fields applied to the search config."""
    from napari_pulse.cli_options import options_from_args
    from napari_pulse.search import SearchConfig

    opts = options_from_args(_with_defaults(args), **fixed)
    if not getattr(args, "set", None):
        return opts
    fields = {f.name: f.type for f in dataclasses.fields(SearchConfig)}
    changes = {}
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in fields:
            raise SystemExit(f"--set: unknown search setting {name!r}; one of {', '.join(fields)}")
        changes[name] = _parse(value, getattr(SearchConfig(), name))
    return dataclasses.replace(opts, config=dataclasses.replace(opts.search_config(), **changes))


def _with_defaults(args: argparse.Namespace) -> argparse.Namespace:
    values = {"generator": None, "factor": 4, **vars(args)}
    return argparse.Namespace(**values)


def _parse(text: str, like: Any) -> Any:
    if isinstance(like, bool):
        return text.lower() in ("1", "true", "yes")
    if isinstance(like, int) or like is None:
        return int(text) if text.lower() != "none" else None
    return type(like)(text)


def describe(opts) -> str:
    """The search settings of a run, in a few words (for report lines)."""
    cfg = opts.search_config()
    starts = "blind"
    if cfg.bank:
        starts = f"bank {cfg.bank}" + ", guided" * cfg.guide + ", quick" * cfg.quick
    # Where the generator has an encoder for the factor, every tile starts from its guess.
    first = "encoder starts where one exists, then " if cfg.encoder else ""
    return f"{cfg.steps} steps, {cfg.restarts} starts, {first}{starts} starts, {opts.mode} mode"


# -- timing and reports -------------------------------------------------------------------


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Wall seconds of one call, and its value."""
    t = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - t, value


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    """The best of ``repeats`` timed calls, after one warm-up call."""
    fn()
    return min(timed(fn)[0] for _ in range(repeats))


def report(label: str, **figures: Any) -> None:
    """One line: ``label: name value, name value, ...`` (floats to 4 significant places)."""
    parts = [f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in figures.items()]
    print(f"{label}: {', '.join(parts)}" if parts else label)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.1f}"
    return str(v)


def psnr(mse: float) -> float:
    return 10 * math.log10(1 / max(mse, 1e-10))


def median_psnr(mse: np.ndarray) -> float:
    return float(np.median([psnr(float(m)) for m in np.ravel(mse)]))


def tile_mse(result: Any) -> np.ndarray:
    """The low-res MSE of every tile of a result, flat."""
    return 10 ** (-np.ravel(result.lr_psnr_tiles) / 10)


def matmul_gflops(sizes: tuple[int, ...] = (512, 1024, 2048), repeats: int = 5) -> float:
    """Best median GFLOP/s of ``n x n`` float32 matmuls: the machine's roof."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b  # warm-up
        times = [timed(lambda a=a, b=b: a @ b)[0] for _ in range(repeats)]
        best = max(best, 2 * n**3 / float(np.median(times)) / 1e9)
    return best


# -- input sets ---------------------------------------------------------------------------


def split(folder: Path, n: int, seed: int = 2026, pattern: str = "*") -> list[Path]:
    """``n`` files of ``folder``, chosen by a fixed seed over sorted names."""
    files = sorted(folder.glob(pattern))
    if not files:
        raise SystemExit(f"no data in {folder}: these benchmarks need ../shared/data")
    rng = np.random.default_rng(seed)
    return [
        files[i] for i in sorted(rng.choice(len(files), size=min(n, len(files)), replace=False))
    ]


def center_crop(a: np.ndarray, size: int) -> np.ndarray:
    """The central ``size x size`` part of an image."""
    y, x = (a.shape[0] - size) // 2, (a.shape[1] - size) // 2
    return a[y : y + size, x : x + size]


def generator_images(name: str, factor: int, n: int, seed: int = 1234) -> np.ndarray:
    """``n`` low-res inputs in [0, 1] made by the generator from random latents (``seed``),
    downscaled bicubic: ``(n, h, w)`` or ``(n, h, w, 3)`` float32."""
    from napari_pulse.degrade import downscale
    from napari_pulse.generators import load

    g = load(name)
    with torch.no_grad():
        z = g.sample_latents(n, torch.Generator().manual_seed(seed))
        hr = ((g.synthesize(z) + 1) / 2).numpy()
    lr = [downscale(h.transpose(1, 2, 0) if g.channels == 3 else h[0], factor) for h in hr]
    return np.clip(np.stack(lr), 0, 1).astype(np.float32)


def as_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def real_faces(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` faces of ``../shared/data/faces`` (fixed-seed split): the 64x64 truths in [0, 1]
    (128 px files downscaled x2) and their x8 bicubic uint8 inputs ``(n, 8, 8, 3)``."""
    from PIL import Image

    from napari_pulse.degrade import downscale

    truth, low = [], []
    for path in split(DATA / "faces", n, pattern="*.jpg"):
        hr = downscale(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255, 2)
        truth.append(np.clip(hr, 0, 1))
        low.append(as_uint8(downscale(hr, 8)))
    return np.stack(truth), np.stack(low)


def heldout_nuclei(holdout: float = 0.1) -> list[Path]:
    """The nuclei images that training never read (the ``nuclei`` generator's split)."""
    from napari_pulse.training.data import list_images

    return list_images(DATA / "nuclei", holdout, "holdout")


def other_kinds() -> dict[str, np.ndarray]:
    """Images of other kinds that scikit-image ships: brightfield cells, a photograph."""
    from skimage.data import camera, cell

    return {"skimage cell (brightfield)": cell(), "skimage camera (photograph)": camera()}
