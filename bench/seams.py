"""Seams: does a tiled result jump at tile borders more than between ordinary neighbours?

A 256x256 nuclei crop from ``../shared/data/nuclei`` (first file of a fixed-seed split),
downscaled x8 to 32x32, is upscaled through 5x5 tiles of the 64x64 face generator (its
output taken as luminance). Prints the mean absolute difference between neighbouring
high-res rows/columns that straddle a tile border (where one tile's footprint ends), and
between all other neighbouring rows/columns, with and without the mosaic refinement.

    python bench/seams.py [--steps 150] [--restarts 16] [--block-tiles 3]

With ``--block-tiles N`` it also runs the image in blocks of N x N tiles (as a large image
runs, :mod:`napari_pulse.blocks`) and prints the jumps where a block's footprint ends,
inside its neighbour's (the cross-fade's far edge), against all other rows/columns.

The fit does not matter here, only the borders, so fewer starts than the default keep it quick.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PIL import Image

import napari_pulse
from harness import DATA, begin, options, parser, report, split, timed
from napari_pulse.degrade import downscale
from napari_pulse.tiling import TileGrid


def jumps(img: np.ndarray, borders: set[int]) -> tuple[float, float, float]:
    """Mean |difference| across border rows+cols, across all other rows+cols, and the share
    of random sets of ordinary rows+cols (as many as the borders) whose mean jump is at least
    the borders' (a permutation p-value: small means the borders really are worse)."""
    img = img.astype(np.float64)
    dy = np.abs(np.diff(img, axis=0)).mean(axis=1)  # dy[i]: between rows i and i+1
    dx = np.abs(np.diff(img, axis=1)).mean(axis=0)
    at = [i - 1 for i in borders if 0 < i < len(dy) + 1]
    mask = np.zeros(len(dy), bool)
    mask[at] = True
    on_values = np.concatenate([dy[mask], dx[mask]])
    off_values = np.concatenate([dy[~mask], dx[~mask]])
    rng = np.random.default_rng(0)
    draws = np.array(
        [rng.choice(off_values, len(on_values), replace=False).mean() for _ in range(10_000)]
    )
    p = float((draws >= on_values.mean()).mean())
    return float(on_values.mean()), float(off_values.mean()), p


def grid_of(shape: tuple[int, ...], tiles: dict, factor: int) -> tuple[TileGrid, int, int]:
    """The tile grid of a result of high-res ``shape`` (``tiles``: ``params["tiles"]``), and
    the low-res border (rows, columns) that the grid's origins count from."""
    by, bx = tiles.get("border", (0, 0))
    low = (shape[0] // factor + 2 * by, shape[1] // factor + 2 * bx)
    return TileGrid.plan(low, tuple(tiles["tile"]), factor, tiles["overlap"]), by, bx


def tile_edges(shape: tuple[int, ...], tiles: dict, factor: int) -> tuple[set[int], set[int]]:
    """The high-res rows and columns inside a result where a tile's footprint starts or ends."""
    grid, by, bx = grid_of(shape, tiles, factor)
    ys = {(e - by) * factor for y in grid.rows for e in (y, y + grid.tile[0])}
    xs = {(e - bx) * factor for c in grid.cols for e in (c, c + grid.tile[1])}
    return {e for e in ys if 0 < e < shape[0]}, {e for e in xs if 0 < e < shape[1]}


def _steps(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean |step| between neighbouring rows, and between neighbouring columns."""
    x = x.astype(np.float64)
    return np.abs(np.diff(x, axis=0)).mean(axis=1), np.abs(np.diff(x, axis=1)).mean(axis=0)


def border_steps(
    img: np.ndarray, tiles: dict, factor: int, truth: np.ndarray | None = None
) -> dict[str, str]:
    """The frame and the worst seam of a grayscale result: the mean |step| between the
    outermost and the next row/column on each side (left/right/top/bottom), the worst
    row/column across a tile border (``tiles``: ``params["tiles"]``), and the median over
    every other row/column (uint8 units). A worst line against a median one says little
    by itself (the worst of many ordinary lines is far above their median too), so beside
    them: the median over the tile-border lines, and the worst of as many ordinary lines
    (the median over 2000 random draws, seed 0). With ``truth`` (uint8 units too), the same
    figures of the truth at the same lines: an edge of the content can make a line step
    as much as a seam would."""
    dy, dx = _steps(img)
    ys, xs = tile_edges(img.shape, tiles, factor)
    seam_y, seam_x = [i - 1 for i in sorted(ys)], [i - 1 for i in sorted(xs)]

    def figures(dy: np.ndarray, dx: np.ndarray, worst: int | None = None) -> tuple:
        ordinary_y = np.delete(dy, [0, len(dy) - 1, *seam_y])
        ordinary_x = np.delete(dx, [0, len(dx) - 1, *seam_x])
        seams = np.concatenate([dy[seam_y], dx[seam_x]])
        at = int(np.argmax(seams)) if worst is None and len(seams) else worst
        return (
            f"{dx[0]:.2f}/{dx[-1]:.2f}/{dy[0]:.2f}/{dy[-1]:.2f}",
            f"{seams[at]:.2f}" if len(seams) else "none",
            f"{np.median(np.concatenate([ordinary_y, ordinary_x])):.2f}",
            at,
        )

    frame, seam, ordinary, at = figures(dy, dx)
    out = {"frame_lrtb": frame, "worst_seam": seam, "ordinary_median": ordinary}
    seams = np.concatenate([dy[seam_y], dx[seam_x]])
    if len(seams):
        others = np.concatenate(
            [np.delete(dy, [0, len(dy) - 1, *seam_y]), np.delete(dx, [0, len(dx) - 1, *seam_x])]
        )
        rng = np.random.default_rng(0)
        worst = [rng.choice(others, len(seams), replace=False).max() for _ in range(2000)]
        out["median_seam"] = f"{np.median(seams):.2f}"
        out["worst_of_as_many_ordinary"] = f"{np.median(worst):.2f}"
    if truth is not None:
        t_frame, t_seam, t_ordinary, _ = figures(*_steps(truth), at)
        out.update(truth_frame=t_frame, truth_at_worst_seam=t_seam, truth_ordinary=t_ordinary)
    return out


def main() -> None:
    p = parser(__doc__, generator="faces-dcgan64", search=True)
    p.set_defaults(steps=150, restarts=16)
    p.add_argument("--block-tiles", type=int, default=0, help="also run in blocks of N x N tiles")
    args = p.parse_args()
    begin(args)
    opts = options(args, factor=8)
    path = split(DATA / "nuclei", 1, pattern="*.png")[0]
    a = np.asarray(Image.open(path).convert("L"), dtype=np.float32)[:256, :256]
    lo, hi = np.percentile(a, (1, 99.8))
    hr = np.clip((a - lo) / (hi - lo), 0, 1)
    low = np.clip(np.rint(downscale(hr, 8) * 255), 0, 255).astype(np.uint8)
    without = replace(opts, config=replace(opts.search_config(), blend_steps=0))
    for label, run in [("with mosaic refinement", opts), ("without (blend only)", without)]:
        seconds, r = timed(napari_pulse.upscale, low, options=run)
        tiles = r.params["tiles"]
        grid = grid_of(r.image.shape, tiles, 8)[0]
        on, off, share = jumps(r.image, tile_edges(r.image.shape, tiles, 8)[0])
        report(
            label,
            tiles=f"{grid.shape[0]}x{grid.shape[1]}",
            lr_psnr_db=r.lr_psnr,
            mean_jump_at_tile_borders=f"{on:.3f}",
            elsewhere=f"{off:.3f} (uint8 units)",
            random_ordinary_rows_and_cols_jump_as_much_in=f"{share:.0%} of draws",
            seconds=seconds,
        )
    if args.block_tiles:
        _blocked(low, opts, args.block_tiles)


def _blocked(low: np.ndarray, opts, n: int) -> None:
    """The same image run in blocks of ``n`` x ``n`` tiles: jumps at the blocks' edges."""
    from napari_pulse import blocks

    blocks.BLOCK_UNITS, blocks.BLOCK_TILES = 1, n
    seconds, r = timed(napari_pulse.upscale, low, options=opts)
    grid, by, _ = grid_of(r.image.shape, r.params["tiles"], 8)
    edges = set()
    for b in blocks.plan(grid, 1):
        y0, y1, x0, x1 = (v - by for v in b.window(grid))
        edges |= {y0 * 8, y1 * 8, x0 * 8, x1 * 8}
    edges = {e for e in edges if 0 < e < r.image.shape[0]}
    on, off, share = jumps(r.image, edges)
    report(
        f"in blocks of {n}x{n} tiles, with mosaic refinement",
        blocks=r.params["blocks"],
        lr_psnr_db=r.lr_psnr,
        mean_jump_at_block_edges=f"{on:.3f}",
        elsewhere=f"{off:.3f} (uint8 units)",
        random_ordinary_rows_and_cols_jump_as_much_in=f"{share:.0%} of draws",
        seconds=seconds,
    )


if __name__ == "__main__":
    main()
