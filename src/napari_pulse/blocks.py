"""Large jobs and stacks in blocks of whole tiles: memory bounded whatever the image size,
and the planes of a stack searched apart from each other.

A job of more than :data:`BLOCK_UNITS` tiles per plane runs as a sequence of smaller jobs:
within a plane, blocks of at most :data:`BLOCK_TILES` x :data:`BLOCK_TILES` tiles that
overlap their neighbours by one tile. A stack runs in groups of whole planes (each plane
one group, unless its planes are so small that one group needs several to hold
:data:`GROUP_UNITS` tiles): a plane's result then does not depend on the other planes of
the stack, which is what lets a batch (:mod:`napari_pulse.batch`) or the viewer run the
groups apart and show each as it finishes, with the pixels ``upscale`` gives. A block's
tiles are exactly the whole image's tiles there (its grid is the image's grid, cut), its
random starts are those of the same tiles in the whole image (:attr:`Job.ids
<napari_pulse.job.Job.ids>`), and every pipeline stage runs on it as on a small image, the
seam refinement included. Each finished block is added to the output with feathered
weights that cross-fade over the shared tile (as tiles are blended within a block); what a
block held is then freed. What stays for the whole image is the output and a few numbers per
tile (its low-res pixels, scores and passes).

A single plane of at most :data:`BLOCK_UNITS` tiles runs as one job. In ``params``, a tile
on a block border counts once per block it was searched in (``passes_per_tile`` adds its
passes; ``tiles_at_eps_after`` counts it in each block); per-tile figures of the result
(``lr_psnr_tiles``) are measured on the finished output, on the whole image's grid.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch

from .candidates import Chosen
from .events import Progress, relay
from .job import Job, State, expected_plans
from .tiling import TileGrid, _ramp

#: Tiles of a plane above which it runs in blocks; and the most units (tiles x planes) a
#: block holds.
BLOCK_UNITS = 2048
#: Tiles a group of a stack's planes holds at least (whole planes, as few as reach it):
#: the encoder rung's two starts per tile then fill a CPU batch of 64 images.
GROUP_UNITS = 32
#: Tiles per block side at most (a block of a plane has at most this squared).
BLOCK_TILES = 32


@dataclass(frozen=True)
class Block:
    """Planes ``planes`` and the tile rows ``r0..r1`` and columns ``c0..c1`` (inclusive)
    of the whole image's grid."""

    planes: slice
    r0: int
    r1: int
    c0: int
    c1: int

    def window(self, grid: TileGrid) -> tuple[int, int, int, int]:
        """The block's low-res extent ``(y0, y1, x0, x1)``."""
        rows, cols, (th, tw) = grid.rows, grid.cols, grid.tile
        return rows[self.r0], rows[self.r1] + th, cols[self.c0], cols[self.c1] + tw

    def grid(self, grid: TileGrid) -> TileGrid:
        """The block's own grid: the image's tiles inside its window."""
        y0, y1, x0, x1 = self.window(grid)
        return TileGrid((y1 - y0, x1 - x0), grid.tile, grid.overlap, grid.factor)

    def units(self, grid: TileGrid, n_tiles: int) -> torch.Tensor:
        """The image's unit index of each of the block's units, in the block's order."""
        cols = len(grid.cols)
        tiles = [
            r * cols + c for r in range(self.r0, self.r1 + 1) for c in range(self.c0, self.c1 + 1)
        ]
        planes = range(self.planes.start, self.planes.stop)
        return torch.tensor([p * n_tiles + t for p in planes for t in tiles])


def _spans(n: int, size: int) -> list[tuple[int, int]]:
    """Index ranges ``(a, b)`` (inclusive) of at most ``size`` over ``0..n-1``, each
    sharing its first index with the last of the one before."""
    if n <= size:
        return [(0, n - 1)]
    out, a = [], 0
    while a < n - 1:
        b = min(a + size - 1, n - 1)
        out.append((a, b))
        a = b
    return out


def plan(grid: TileGrid, n_planes: int) -> list[Block] | None:
    """The blocks of a job, or None when it runs whole (a single plane that is not large)."""
    tiles = len(grid)
    if n_planes == 1 and tiles <= BLOCK_UNITS:
        return None
    if tiles <= BLOCK_UNITS:  # a stack of planes that are not large: whole planes
        rows, cols = [(0, len(grid.rows) - 1)], [(0, len(grid.cols) - 1)]
    else:
        rows, cols = _spans(len(grid.rows), BLOCK_TILES), _spans(len(grid.cols), BLOCK_TILES)
    per_block = max((b - a + 1) * (d - c + 1) for a, b in rows for c, d in cols)
    group = max(1, min(-(-GROUP_UNITS // per_block), BLOCK_UNITS // per_block))
    return [
        Block(slice(p, min(n_planes, p + group)), a, b, c, d)
        for p in range(0, n_planes, group)
        for a, b in rows
        for c, d in cols
    ]


def groups(parts: list[Block]) -> list[list[int]]:
    """The indices of ``parts`` by group of planes (every group's blocks, in plan order)."""
    found: dict[int, list[int]] = {}
    for i, block in enumerate(parts):
        found.setdefault(block.planes.start, []).append(i)
    return list(found.values())


def jobs(whole: Job, blocks: list[Block], live: bool = True) -> Iterator[tuple[Block, Job]]:
    """Each block's job, made when it is reached (``live``: with its tiles' previews)."""
    for block in blocks:
        y0, y1, x0, x1 = block.window(whole.grid)
        target = whole.planes[block.planes, :, y0:y1, x0:x1]
        ids = block.units(whole.grid, len(whole.grid))
        grid = block.grid(whole.grid)
        ry0, ry1, rx0, rx1 = whole.real_box
        real = (max(ry0, y0) - y0, min(ry1, y1) - y0, max(rx0, x0) - x0, min(rx1, x1) - x0)
        real = None if real == (0, y1 - y0, 0, x1 - x0) else real  # no border in this block
        job = Job.make(
            whole.render, whole.degrade, grid, target, whole.cfg, whole.seed, ids, live, real
        )
        yield block, job


def plans(whole: Job, blocks: list[Block], build: Callable[[Job], list]) -> list[int]:
    """Each block's share of the progress total, before any has run (its stages'
    :func:`~napari_pulse.job.expected_plans`)."""
    return [sum(expected_plans(job, build(job))) for _, job in jobs(whole, blocks, live=False)]


class Canvas:
    """The output of a blocked job: blocks added with feathered weights ``(M, C, H, W)``,
    in any order (the weights' sums are known from the plan)."""

    def __init__(self, whole: Job, parts: list[Block]) -> None:
        f, (h, w) = whole.grid.factor, whole.planes.shape[-2:]
        c = whole.planes.shape[1]
        self.whole, self.f = whole, f
        self.acc = torch.zeros((whole.n_planes, whole.samples, c, h * f, w * f))
        self.norm = torch.zeros((h * f, w * f))
        for block in parts:
            if block.planes.start == 0:  # every group of planes has the same windows
                y0, y1, x0, x1 = self.window(block)
                self.norm[y0:y1, x0:x1] += self._weight(y1 - y0, x1 - x0)
        self._seen = torch.zeros_like(self.norm)  # the weights added so far, for the preview
        self._shown: torch.Tensor | None = None  # the preview's image, painted block by block
        self._unshown: list[Block] = []

    def window(self, block: Block) -> tuple[int, int, int, int]:
        """The block's high-res extent ``(y0, y1, x0, x1)``."""
        return tuple(v * self.f for v in block.window(self.whole.grid))  # type: ignore[return-value]

    def _weight(self, h: int, w: int) -> torch.Tensor:
        ry, rx = ramps(self.whole.grid, h, w)
        return ry[:, None] * rx[None, :]

    def add(self, block: Block, mosaics: torch.Tensor) -> None:
        """Add a block's mosaics ``(planes x samples, C, H, W)``, planes major."""
        y0, y1, x0, x1 = self.window(block)
        weight = self._weight(y1 - y0, x1 - x0)
        n = self.whole.samples
        part = mosaics.detach().cpu().view(-1, n, *mosaics.shape[1:])
        self.acc[block.planes, :, :, y0:y1, x0:x1] += weight * part
        if block.planes.start == 0:  # the preview's weights, as far as they are known
            self._seen[y0:y1, x0:x1] += weight
        self._unshown.append(block)

    def planes(self, planes: slice) -> torch.Tensor:
        """The blended output of ``planes`` ``(planes, samples, C, H, W)``, once every block
        of their group was added (a copy: the canvas goes on)."""
        return self.acc[planes] / self.norm.clamp(min=1e-12)

    def image(self) -> torch.Tensor:
        """The blended output ``(planes x samples, C, H, W)``, once every block was added
        (divided in place: the canvas is spent)."""
        return self.acc.div_(self.norm.clamp(min=1e-12)).flatten(0, 1)

    def preview(self) -> torch.Tensor:
        """The first sample of every plane so far ``(P, C, H, W)``: the input upsampled
        (bilinear), with every block added so far painted in. One buffer, updated only
        where blocks were added since the last call."""
        if self._shown is None:
            planes = self.whole.planes.cpu()
            self._shown = torch.nn.functional.interpolate(
                planes, scale_factor=self.f, mode="bilinear"
            )
        for block in self._unshown:
            # Neighbours added later change a window's shared edges: paint with what is known.
            y0, y1, x0, x1 = self.window(block)
            acc = self.acc[block.planes, 0, :, y0:y1, x0:x1]
            self._shown[block.planes, :, y0:y1, x0:x1] = acc / self._seen[y0:y1, x0:x1]
        self._unshown = []
        return self._shown


def ramps(grid: TileGrid, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The feathered weight of a block of ``h`` x ``w`` high-res pixels, as its rows' and
    columns' factors (the weight is their outer product): it cross-fades over the block's
    outer tiles."""
    th, tw = (t * grid.factor for t in grid.tile)
    return _ramp(h, th), _ramp(w, tw)


@dataclass
class Outcome:
    """What one block's search leaves for the whole image: its mosaics (planes x samples,
    C, H, W) and, per unit of the block, the chosen samples' scores and the passes."""

    mosaics: torch.Tensor
    ood: torch.Tensor
    latent_mse: torch.Tensor
    passes: torch.Tensor
    at_eps: dict[str, int]
    bank: torch.Tensor | None = None
    bank_key: object = None

    @classmethod
    def of(cls, state: State) -> Outcome:
        """A finished block's state, on the CPU."""
        chosen = state.chosen
        return cls(
            state.mosaics.detach().cpu(),
            chosen.ood.cpu(),
            chosen.latent_mse.cpu(),
            state.passes.cpu(),
            dict(state.at_eps),
            None if state.bank is None else state.bank.cpu(),
            state.bank_key,
        )


class Gather:
    """The whole image's state, made from its blocks' outcomes added in plan order
    (``canvas``: with their mosaics blended in memory; without, the state has none, for
    outputs written block by block, :mod:`napari_pulse.streamed`)."""

    def __init__(self, whole: Job, parts: list[Block], canvas: bool = True) -> None:
        u = whole.n_units
        self.canvas = Canvas(whole, parts) if canvas else None
        self.ood = torch.zeros((u, whole.samples))
        self.latent_mse = torch.zeros(u)
        self.passes = torch.zeros(u, dtype=torch.long)
        self.at_eps: dict[str, int] = {}
        self.bank = self.bank_key = None

    def add(self, block: Block, ids: torch.Tensor, out: Outcome) -> None:
        """Add the outcome of ``block`` (whose units are ``ids`` in the whole image)."""
        self.ood[ids] = torch.maximum(self.ood[ids], out.ood)
        self.latent_mse[ids] = out.latent_mse
        self.passes.index_add_(0, ids, out.passes)
        for name, count in out.at_eps.items():
            self.at_eps[name] = self.at_eps.get(name, 0) + count
        self.bank, self.bank_key = out.bank, out.bank_key
        if self.canvas is not None:
            self.canvas.add(block, out.mosaics)

    def state(self) -> State:
        """The whole image's state for the result (spends the canvas)."""
        empty = torch.zeros(0)
        chosen = Chosen(empty, [], empty, self.latent_mse, ood=self.ood)
        return State(
            self.bank,
            self.bank_key,
            chosen=chosen,
            mosaics=None if self.canvas is None else self.canvas.image(),
            passes=self.passes,
            at_eps=self.at_eps,
        )


def run(
    whole: Job,
    blocks: list[Block],
    build: Callable[[Job], list],
    runner: Callable,
    preview_of: Callable[..., Callable[[], np.ndarray]],
    planned: list[int] | None = None,
) -> Generator[Progress, None, State]:
    """Run the stages ``build(job)`` on every block (``runner(job, stages, preview)``, the
    pipeline's runner), on one progress ledger (``planned``: the blocks' shares, from
    :func:`plans`; a block's share becomes the total its runner ends with, as the runner
    plans its stages again); returns the whole image's state for the result: the blended
    mosaics and, per unit, the chosen samples' scores and the passes."""
    planned = list(planned if planned is not None else plans(whole, blocks, build))
    done = 0
    gather = Gather(whole, blocks)
    for i, (block, job) in enumerate(jobs(whole, blocks)):
        preview = preview_of(job, gather.canvas, block)
        rest = sum(planned[i + 1 :])

        def placed(e: Progress, at: int = done, rest: int = rest, i: int = i) -> Progress:
            planned[i] = e.total  # the block's own total, as its runner plans it now
            return replace(e, done=at + e.done, total=at + e.total + rest)

        state = yield from relay(runner(job, build(job), preview), placed)
        gather.add(block, job.ids, Outcome.of(state))
        done += planned[i]
        del state, job, preview
    return gather.state()
