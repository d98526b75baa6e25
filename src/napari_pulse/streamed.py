"""Outputs larger than memory: a blocked job's block outcomes kept on disk, and its output
written to zarr a window at a time from them.

A batch (:mod:`napari_pulse.batch`) runs each block of a large input
(:mod:`napari_pulse.blocks`) as a task that saves its outcome in an :class:`OutcomeStore`, a
folder beside the output with one file pair per block, each written atomically and tagged
with the input's key; so a rerun after a crash searches only the blocks that are missing.
:func:`write` then writes the output :data:`~napari_pulse.writing.ZARR_CHUNK` high-res
pixels square at a time. A window's pixels are the feathered sum of the blocks that cover
it, added in the plan's order with the weights :class:`~napari_pulse.blocks.Canvas` uses, so
they equal the in-memory result bit for bit; its fit (the low-res error per sample and per
tile) is measured on the cast output with the operator's margin around it, and the spread on
the written samples with its window's. What is held at once is a window and the job's
low-res figures, whatever the size of the output.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections import OrderedDict
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .bank import BankKey
from .blocks import Block, Outcome, ramps
from .error_map import HALO, ErrorModel
from .imageio import write_atomic
from .job import Job
from .result import (
    SPREAD_SIGMA,
    Frame,
    Result,
    expected_error,
    fitted,
    half_span,
    local_spread,
    squares,
)
from .writing import ZARR_CHUNK, new_array

#: Block files a window's reads keep open (memory maps).
OPEN_BLOCKS = 16


class OutcomeStore:
    """The saved outcomes of a blocked job's blocks, under ``folder``, for the input, options
    and code whose key is ``key``: per block ``NNNNN.<tag>.npy`` (the mosaics), then
    ``NNNNN.<tag>.npz`` (the rest, with the key and the mosaics' shape), ``tag`` a hash of
    the key. A block counts as saved only when both load and match the key and each other,
    so a block written for other options (a task of an interrupted run that was still
    running), or cut short by a crash, is searched again. :meth:`open` empties a folder
    that holds another key's blocks."""

    def __init__(self, folder: Path, key: str) -> None:
        self.folder, self.key = Path(folder), key
        self.tag = hashlib.sha256(key.encode()).hexdigest()[:12]

    def open(self) -> OutcomeStore:
        """Make the folder (emptied when it holds another key's blocks); returns self."""
        mark = self.folder / "key"
        if self.folder.exists() and (not mark.is_file() or mark.read_text() != self.key):
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if not mark.is_file():
            write_atomic(mark, lambda fh: fh.write(self.key.encode()))
        return self

    def done(self, n: int) -> list[int]:
        """The blocks among ``0..n-1`` saved whole for this key."""
        return [i for i in range(n) if self._complete(i)]

    def missing(self, n: int) -> list[int]:
        """The blocks among ``0..n-1`` still to search."""
        have = set(self.done(n))
        return [i for i in range(n) if i not in have]

    def _complete(self, index: int) -> bool:
        try:
            with np.load(self._small(index), allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
            shape = tuple(self.mosaics(index).shape)
        except Exception:  # noqa: BLE001 - absent, cut short or not ours: not saved
            return False
        return meta.get("key") == self.key and shape == tuple(meta.get("shape", ()))

    def save(self, index: int, outcome: Outcome) -> None:
        """Keep block ``index``'s outcome (the mosaics first; each file written to a
        temporary name, flushed to disk and renamed into place). The folder is not emptied
        here: :meth:`open` it first, once per run."""
        mosaics = outcome.mosaics.detach().cpu().numpy()
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self._mosaics(index), lambda fh: np.save(fh, mosaics))
        meta = {
            "key": self.key,
            "shape": list(mosaics.shape),
            "at_eps": outcome.at_eps,
            "bank_key": None if outcome.bank_key is None else asdict(outcome.bank_key),
        }
        arrays = {
            "ood": outcome.ood.numpy(),
            "latent_mse": outcome.latent_mse.numpy(),
            "passes": outcome.passes.numpy(),
            "meta": np.array(json.dumps(meta)),
        }
        if outcome.bank is not None:
            arrays["bank"] = outcome.bank.numpy()
        write_atomic(self._small(index), lambda fh: np.savez(fh, **arrays))

    def figures(self, index: int) -> Outcome:
        """Block ``index``'s outcome without its mosaics (an empty tensor in their place)."""
        with np.load(self._small(index), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta["key"] != self.key:
                raise ValueError(f"block {index} in {self.folder} is from another input")
            bank = torch.from_numpy(z["bank"]) if "bank" in z.files else None
            found = {k: torch.from_numpy(z[k]) for k in ("ood", "latent_mse", "passes")}
        key = meta["bank_key"]
        key = None if key is None else BankKey(**{**key, "crop": tuple(key["crop"])})
        return Outcome(torch.zeros(0), **found, at_eps=meta["at_eps"], bank=bank, bank_key=key)

    def mosaics(self, index: int) -> np.ndarray:
        """Block ``index``'s mosaics ``(planes x samples, C, H, W)``, memory-mapped."""
        return np.load(self._mosaics(index), mmap_mode="r", allow_pickle=False)

    def remove(self) -> None:
        """Delete the folder and what it holds."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _mosaics(self, index: int) -> Path:
        return self.folder / f"{index:05d}.{self.tag}.npy"

    def _small(self, index: int) -> Path:
        return self.folder / f"{index:05d}.{self.tag}.npz"


def write(
    group: Any,
    frame: Frame,
    whole: Job,
    parts: list[Block],
    store: OutcomeStore,
    eps: float,
    errors: ErrorModel | None = None,
) -> Result:
    """Write the output of ``whole`` (run in ``parts``, their outcomes in ``store``) into
    ``group``: arrays ``image``, with several samples ``samples`` and ``std``, and with an
    expected-error model (``errors``) ``error``, shaped and valued as
    :func:`~napari_pulse.upscale`'s result. Returns the result measured against the input
    (its arrays are the group's)."""
    geo = _Geometry(frame, whole)
    n = whole.samples
    user = (*frame.layout.lead, geo.h, geo.w) + ((3,) if frame.layout.rgb else ())
    if frame.layout.single_channel:
        user = (*user, 1)
    image = new_array(group, "image", user, frame.dtype, geo.chunk)
    samples = new_array(group, "samples", (n, *user), frame.dtype, geo.chunk) if n > 1 else None
    reader = _Reader(store, parts, whole)
    err = np.zeros(frame.planes.shape, dtype=np.float32)  # the best sample's, (P, C, h, w)
    sums, scale = np.zeros(n), 0.0
    for u, planes in geo.user_planes():
        for win in geo.windows():
            out, core = geo.pixels(reader, planes, win, whole.degrade.pad)
            at = geo.index(u) + win.slices()
            image[at] = out[0][core]
            if samples is not None:
                samples[(slice(None), *at)] = out[(slice(None), *core)]
            scale = max(scale, float(np.abs(out[(slice(None), *core)].astype(np.float64)).max()))
            e = geo.error(out, planes, win)
            err[planes, :, win.ly0 : win.ly1, win.lx0 : win.lx1] = e[0]
            sums += e.reshape(n, -1).sum(axis=1, dtype=np.float64)
    # The best sample's figure as ``upscale`` takes it (a float32 mean of the same array),
    # so that ``lr_psnr`` and ``success`` are its own; the others summed in float64.
    sample_mse = [float(err.mean()), *(sums[1:] / err.size)]
    std = None
    if samples is not None:
        kind = np.float64 if frame.dtype == np.float64 else np.float32  # as _spread gives
        std = new_array(group, "std", user, kind, geo.chunk)
        for u, _ in geo.user_planes():
            for win in geo.windows():
                std[geo.index(u) + win.slices()] = geo.spread(samples, u, win, scale)
    error, total, half = None, 0.0, half_span(frame.intensity)
    if errors is not None:
        kind = np.float64 if frame.dtype == np.float64 else np.float32  # as expected_error
        error = new_array(group, "error", user, kind, geo.chunk)
        for u, planes in geo.user_planes():
            for win in geo.windows():
                e = geo.error_map(errors, image, u, planes, win)
                error[geo.index(u) + win.slices()] = e
                total += squares(e, half)
    result = fitted(
        image,
        err,
        sample_mse,
        frame.layout,
        whole.grid,
        eps,
        whole.real_box,
        samples=samples,
        std=std,
    )
    result.error = error
    if error is not None:
        result.error_rms = math.sqrt(total / error.size) * half
    return result


class _Window:
    """A window of the output ``[y0, y1) x [x0, x1)`` (high-res pixels, multiples of the
    factor), and its low-res extent."""

    def __init__(self, y0: int, y1: int, x0: int, x1: int, f: int) -> None:
        self.y0, self.y1, self.x0, self.x1 = y0, y1, x0, x1
        self.ly0, self.ly1, self.lx0, self.lx1 = y0 // f, y1 // f, x0 // f, x1 // f

    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


class _Geometry:
    """Where the output's windows lie, in the output and in the job's high-res frame."""

    def __init__(self, frame: Frame, whole: Job) -> None:
        self.frame, self.whole = frame, whole
        self.f = f = whole.grid.factor
        ry0, ry1, rx0, rx1 = whole.real_box
        self.oy, self.ox = ry0 * f, rx0 * f  # the output's origin in the job's frame
        self.h, self.w = (ry1 - ry0) * f, (rx1 - rx0) * f
        self.chunk = max(f, ZARR_CHUNK // f * f)  # whole low-res pixels per chunk
        self.one = replace(frame.layout, lead=(1,))  # one user plane's layout
        self._frame = replace(frame, layout=self.one)

    def user_planes(self) -> list[tuple[int, list[int]]]:
        """Each plane of the user's array (flat index) and the job's planes that make it."""
        per = 3 if self.frame.layout.split_channels else 1
        n = self.whole.n_planes // per
        return [(u, list(range(u * per, (u + 1) * per))) for u in range(n)]

    def index(self, u: int) -> tuple[int, ...]:
        return tuple(int(i) for i in np.unravel_index(u, self.frame.layout.lead))

    def windows(self) -> list[_Window]:
        c = self.chunk
        return [
            _Window(y, min(y + c, self.h), x, min(x + c, self.w), self.f)
            for y in range(0, self.h, c)
            for x in range(0, self.w, c)
        ]

    def _around(self, win: _Window, halo: int) -> tuple[int, int, int, int]:
        return (
            max(win.y0 - halo, 0),
            min(win.y1 + halo, self.h),
            max(win.x0 - halo, 0),
            min(win.x1 + halo, self.w),
        )

    def pixels(
        self, reader: _Reader, planes: list[int], win: _Window, halo: int
    ) -> tuple[np.ndarray, tuple[slice, ...]]:
        """The cast output of one user plane over ``win`` and ``halo`` pixels around it
        (within the image), ``(N, H, W[, 3])``, and where ``win`` lies in it."""
        y0, y1, x0, x1 = self._around(win, halo)
        mosaics = reader.blend(planes, self.oy + y0, self.oy + y1, self.ox + x0, self.ox + x1)
        out = self._frame.to_user(mosaics)[:, 0]
        core = (slice(win.y0 - y0, win.y1 - y0), slice(win.x0 - x0, win.x1 - x0))
        return out, core

    def error(self, out: np.ndarray, planes: list[int], win: _Window) -> np.ndarray:
        """The squared low-res error of ``out`` (:meth:`pixels` with the operator's margin)
        over ``win``, ``(N, planes, C, h, w)``: the operator reads the output as it reads
        the whole image (reflected at the image's edges only)."""
        degrade, frame = self.whole.degrade, self.frame
        p = degrade.pad
        y0, y1, x0, x1 = self._around(win, p)
        back = np.stack([self.one.to_planes(v[None]) for v in frame.intensity.to_unit(out)])
        x = torch.from_numpy(back).flatten(0, 1)  # (N x planes, C, H, W)
        if p:
            mode = "reflect" if p < min(self.h, self.w) else "replicate"
            need = (p - (win.x0 - x0), p - (x1 - win.x1), p - (win.y0 - y0), p - (y1 - win.y1))
            n, c, hh, ww = x.shape
            x = torch.nn.functional.pad(x.reshape(n * c, 1, hh, ww), need, mode=mode)
            x = x.view(n, c, *x.shape[-2:])
        with torch.no_grad():
            lr = degrade.padded(x.to(degrade.taps.device)).cpu().numpy()
        lr = lr.reshape(len(out), len(planes), *lr.shape[1:])
        target = frame.planes[planes, :, win.ly0 : win.ly1, win.lx0 : win.lx1]
        return (lr - target[None]) ** 2

    def spread(self, samples: Any, u: int, win: _Window, scale: float) -> np.ndarray:
        """The local spread over ``win`` of user plane ``u``, from the written samples."""
        r = max(1, math.ceil(3 * SPREAD_SIGMA * self.f))
        y0, y1, x0, x1 = self._around(win, r)
        x = np.asarray(samples[(slice(None), *self.index(u), slice(y0, y1), slice(x0, x1))])
        std = local_spread(x[:, None], self.one, self.f, scale)[0]
        return std[win.y0 - y0 : win.y1 - y0, win.x0 - x0 : win.x1 - x0]

    def error_map(
        self, model: ErrorModel, image: Any, u: int, planes: list[int], win: _Window
    ) -> np.ndarray:
        """The expected error over ``win`` of user plane ``u``, from the written image and
        the input (:data:`~napari_pulse.error_map.HALO` low-res pixels around it)."""
        f = self.f
        y0, y1, x0, x1 = self._around(win, HALO * f)  # whole low-res pixels: the window's
        x = np.asarray(image[(*self.index(u), slice(y0, y1), slice(x0, x1))])
        low = self.frame.planes[planes, :, y0 // f : y1 // f, x0 // f : x1 // f]
        e = expected_error(model, self._frame, x[None], low)[0]
        return e[win.y0 - y0 : win.y1 - y0, win.x0 - x0 : win.x1 - x0]


class _Reader:
    """The blended mosaics of any window of the job's high-res frame, from the blocks'
    saved mosaics (only the blocks that cover it are read)."""

    def __init__(self, store: OutcomeStore, parts: list[Block], whole: Job) -> None:
        self.store, self.parts, self.whole = store, parts, whole
        self.f, self.n = whole.grid.factor, whole.samples
        self.boxes = [tuple(v * self.f for v in b.window(whole.grid)) for b in parts]
        self.groups: dict[int, list[int]] = {}  # a group's first plane: its blocks, in order
        self.group_of = np.zeros(whole.n_planes, dtype=np.int64)
        for i, block in enumerate(parts):
            self.groups.setdefault(block.planes.start, []).append(i)
            self.group_of[block.planes] = block.planes.start
        self._open: OrderedDict[int, np.ndarray] = OrderedDict()
        self._norm: dict[tuple[int, int, int, int], torch.Tensor] = {}

    def _mosaics(self, i: int) -> np.ndarray:
        if i not in self._open:
            while len(self._open) >= OPEN_BLOCKS:
                self._open.popitem(last=False)
            self._open[i] = self.store.mosaics(i)
        self._open.move_to_end(i)
        return self._open[i]

    def _covering(self, i: int, y0: int, y1: int, x0: int, x1: int):
        """Where block ``i`` meets the window: its weight there, the window's slices and the
        block's; None when it does not."""
        by0, by1, bx0, bx1 = self.boxes[i]
        if by0 >= y1 or by1 <= y0 or bx0 >= x1 or bx1 <= x0:
            return None
        ay, by, ax, bx = max(y0, by0), min(y1, by1), max(x0, bx0), min(x1, bx1)
        ry, rx = ramps(self.whole.grid, by1 - by0, bx1 - bx0)
        weight = ry[ay - by0 : by - by0, None] * rx[None, ax - bx0 : bx - bx0]
        dst = (slice(ay - y0, by - y0), slice(ax - x0, bx - x0))
        src = (slice(ay - by0, by - by0), slice(ax - bx0, bx - bx0))
        return weight, dst, src

    def norm(self, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
        """The blocks' weights summed over the window, as ``Canvas`` sums them: those of the
        first group of planes (every group has the same windows), in plan order."""
        key = (y0, y1, x0, x1)
        if key not in self._norm:
            norm = torch.zeros((y1 - y0, x1 - x0))
            for i in self.groups[0]:
                found = self._covering(i, *key)
                if found is not None:
                    norm[found[1]] += found[0]
            self._norm = {key: norm}  # windows come plane by plane: keep the last
        return self._norm[key]

    def blend(self, planes: list[int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """``(planes, N, C, y1 - y0, x1 - x0)`` float32, as ``Canvas.image()`` gives there:
        each plane's blocks' weighted mosaics added in plan order, then divided by the
        summed weights."""
        c = self.whole.planes.shape[1]
        acc = torch.zeros((len(planes), self.n, c, y1 - y0, x1 - x0))
        for k, p in enumerate(planes):
            group = int(self.group_of[p])
            for i in self.groups[group]:
                found = self._covering(i, y0, y1, x0, x1)
                if found is None:
                    continue
                weight, dst, src = found
                row = (p - group) * self.n
                part = np.array(self._mosaics(i)[(slice(row, row + self.n), slice(None), *src)])
                acc[(k, slice(None), slice(None), *dst)] += weight * torch.from_numpy(part)
        return acc.div_(self.norm(y0, y1, x0, x1).clamp(min=1e-12)).numpy()
