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


def border_steps(img: np.ndarray, tiles: dict, factor: int) -> dict[str, str]:
    """The frame and the worst seam of a grayscale result: the mean |step| between the
    outermost and the next row/column on each side (left/right/top/bottom), the worst
    row/column across a tile border (``tiles``: ``params["tiles"]``), and the median over
    every other row/column (uint8 units)."""
    x = img.astype(np.float64)
    dy = np.abs(np.diff(x, axis=0)).mean(axis=1)
    dx = np.abs(np.diff(x, axis=1)).mean(axis=0)
    low = (x.shape[0] // factor, x.shape[1] // factor)
    grid = TileGrid.plan(low, tuple(tiles["tile"]), factor, tiles["overlap"])
    ys = {e * factor for y in grid.rows for e in (y, y + grid.tile[0])} - {0, x.shape[0]}
    xs = {e * factor for c in grid.cols for e in (c, c + grid.tile[1])} - {0, x.shape[1]}
    seam_y, seam_x = [i - 1 for i in ys], [i - 1 for i in xs]
    ordinary_y = np.delete(dy, [0, len(dy) - 1, *seam_y])
    ordinary_x = np.delete(dx, [0, len(dx) - 1, *seam_x])
    seams = np.concatenate([dy[seam_y], dx[seam_x]])
    return {
        "frame_lrtb": f"{dx[0]:.2f}/{dx[-1]:.2f}/{dy[0]:.2f}/{dy[-1]:.2f}",
        "worst_seam": f"{seams.max():.2f}" if len(seams) else "none",
        "ordinary_median": f"{np.median(np.concatenate([ordinary_y, ordinary_x])):.2f}",
    }


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
        grid = TileGrid.plan(low.shape, tuple(tiles["tile"]), 8, tiles["overlap"])
        edges = {e * 8 for y in grid.rows for e in (y, y + grid.tile[0])} - {0, 256}
        on, off, share = jumps(r.image, edges)
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
    tiles = r.params["tiles"]
    grid = TileGrid.plan(low.shape, tuple(tiles["tile"]), 8, tiles["overlap"])
    edges = set()
    for b in blocks.plan(grid, 1):
        y0, y1, x0, x1 = b.window(grid)
        edges |= {y0 * 8, y1 * 8, x0 * 8, x1 * 8}
    edges -= {0, 256}
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
