"""Tile plans and the feathered mosaic blend."""

from __future__ import annotations

import pytest
import torch

from napari_pulse.tiling import Mosaic, TileGrid

pytestmark = pytest.mark.usefixtures("one_thread")


def _covered(starts: list[int], tile: int, size: int) -> list[int]:
    hits = [0] * size
    for s in starts:
        for i in range(s, s + tile):
            hits[i] += 1
    return hits


@pytest.mark.parametrize(
    "size,tile,overlap",
    [
        ((5, 3), (8, 8), None),  # smaller than a tile, non-square
        ((8, 8), (8, 8), None),  # exactly one tile
        ((8, 20), (8, 8), None),  # one row, several columns
        ((20, 28), (8, 8), None),
        ((31, 17), (8, 6), 3),
        ((100, 9), (16, 4), 1),
        ((40, 40), (10, 10), 5),
        ((12, 12), (4, 4), 3),  # overlap close to the tile
    ],
)
def test_plan_covers_everything_with_overlap(size, tile, overlap):
    grid = TileGrid.plan(size, tile, factor=4, overlap=overlap)
    th, tw = grid.tile
    assert (th, tw) == (min(tile[0], size[0]), min(tile[1], size[1]))
    assert grid.overlap >= 1 if overlap is None else grid.overlap == overlap
    for starts, t, n in ((grid.rows, th, size[0]), (grid.cols, tw, size[1])):
        assert starts[0] == 0
        assert starts[-1] == n - t  # the last tile is aligned to the edge
        assert starts == sorted(set(starts))
        assert all(s >= 0 and s + t <= n for s in starts)  # inside the image
        assert min(_covered(starts, t, n)) >= 1  # no gap
        for a, b in zip(starts, starts[1:], strict=False):
            assert a + t - b >= grid.overlap  # neighbours overlap by at least `overlap`
    assert len(grid) == len(grid.rows) * len(grid.cols) == len(grid.origins)
    assert grid.shape == (len(grid.rows), len(grid.cols))
    assert grid.origins[0] == (0, 0)
    assert grid.origins[-1] == (size[0] - th, size[1] - tw)


def test_plan_single_tile_when_image_fits():
    for size in [(5, 3), (8, 8), (8, 2)]:
        grid = TileGrid.plan(size, (8, 8), factor=2)
        assert grid.shape == (1, 1)
        assert grid.tile == size


def test_plan_default_overlap_and_known_layout():
    grid = TileGrid.plan((20, 28), (8, 8), factor=4)
    assert grid.overlap == 2
    assert grid.rows == [0, 6, 12]
    assert grid.cols == [0, 6, 12, 18, 20]
    assert grid.shape == (3, 5)


@pytest.mark.parametrize("size", [(5, 3), (20, 28), (9, 30)])
def test_weights_positive_and_shaped(size):
    grid = TileGrid.plan(size, (8, 8), factor=3)
    w = grid.weight()
    assert w.shape == (grid.tile[0] * 3, grid.tile[1] * 3)
    assert (w > 0).all()
    assert w.max() == pytest.approx(1.0)
    if len(grid) > 1:  # feathered: the edges weigh less than the middle
        assert w[0, 0] < w[w.shape[0] // 2, w.shape[1] // 2]


def test_cut_returns_the_tiles():
    grid = TileGrid.plan((10, 13), (6, 6), factor=2)
    image = torch.arange(2 * 10 * 13, dtype=torch.float32).view(1, 2, 10, 13)
    tiles = grid.cut(image)
    assert tiles.shape == (1, len(grid), 2, 6, 6)
    for k, (y, x) in enumerate(grid.origins):
        torch.testing.assert_close(tiles[0, k], image[0, :, y : y + 6, x : x + 6])


def _grid_and_tiles(seed: int = 0, m: int = 2, c: int = 3):
    grid = TileGrid.plan((13, 18), (6, 6), factor=2, overlap=2)
    f = grid.factor
    g = torch.Generator().manual_seed(seed)
    tiles = torch.rand(
        (m, len(grid), c, grid.tile[0] * f, grid.tile[1] * f), generator=g, dtype=torch.float64
    )
    return grid, tiles


def _reference_blend(grid: TileGrid, tiles: torch.Tensor) -> torch.Tensor:
    """Brute force: the weighted mean of every tile covering each high-res pixel."""
    f = grid.factor
    m, _, c = tiles.shape[:3]
    acc = torch.zeros((m, c, grid.size[0] * f, grid.size[1] * f), dtype=tiles.dtype)
    norm = torch.zeros(acc.shape[-2:], dtype=tiles.dtype)
    w = grid.weight().to(tiles.dtype)
    for k, (y, x) in enumerate(grid.origins):
        ys = slice(y * f, (y + grid.tile[0]) * f)
        xs = slice(x * f, (x + grid.tile[1]) * f)
        acc[..., ys, xs] += w * tiles[:, k]
        norm[ys, xs] += w
    assert (norm > 0).all()
    return acc / norm


def test_mosaic_of_constant_tiles_is_constant():
    grid, tiles = _grid_and_tiles()
    tiles = torch.full_like(tiles, 0.6)
    image = Mosaic(grid, tiles).image()
    assert image.shape == (2, 3, 26, 36)
    torch.testing.assert_close(image, torch.full_like(image, 0.6))


def test_mosaic_matches_brute_force_blend():
    grid, tiles = _grid_and_tiles()
    assert len(grid) > 4
    torch.testing.assert_close(Mosaic(grid, tiles).image(), _reference_blend(grid, tiles))


def test_mosaic_keeps_a_copy_of_the_tiles():
    grid, tiles = _grid_and_tiles()
    mosaic = Mosaic(grid, tiles)
    before = mosaic.image().clone()
    tiles.zero_()
    torch.testing.assert_close(mosaic.image(), before)


@pytest.mark.parametrize("idx", [[1, 2], [9, 10, 11], [5]])
def test_compose_with_current_tiles_equals_image_in_box(idx):
    grid, tiles = _grid_and_tiles()
    mosaic = Mosaic(grid, tiles)
    f = grid.factor
    ys = [grid.origins[i][0] for i in idx]
    xs = [grid.origins[i][1] for i in idx]
    h, w = grid.size
    box = (
        slice(max(0, min(ys) - 1) * f, min(h, max(ys) + grid.tile[0] + 1) * f),
        slice(max(0, min(xs) - 1) * f, min(w, max(xs) + grid.tile[1] + 1) * f),
    )
    fixed = mosaic.fixed(idx, box)
    out = mosaic.compose(fixed, idx, mosaic.tiles[:, idx], box)
    torch.testing.assert_close(out, mosaic.image()[..., box[0], box[1]])
    # With other tiles for idx, compose equals the blend of the swapped tile set.
    new = torch.rand_like(tiles[:, idx])
    swapped = tiles.clone()
    swapped[:, idx] = new
    out = mosaic.compose(fixed, idx, new, box)
    torch.testing.assert_close(out, _reference_blend(grid, swapped)[..., box[0], box[1]])


def test_blend_weights_do_not_always_sum_to_one():
    # The edge-aligned last row overlaps by more than the feathering ramp: there the weights
    # sum to more than 1, so the tests above really exercise the normalisation.
    grid, tiles = _grid_and_tiles()
    assert grid.rows == [0, 4, 7]
    norm = _reference_blend(grid, torch.ones_like(tiles[:, :, :1]))  # all ones: 1 everywhere
    torch.testing.assert_close(norm, torch.ones_like(norm))
    assert Mosaic(grid, tiles).norm.max() > 1.25


def test_compose_carries_gradients_to_the_tiles():
    grid, tiles = _grid_and_tiles()
    mosaic = Mosaic(grid, tiles)
    f = grid.factor
    box = (slice(0, 6 * f), slice(0, 8 * f))
    new = tiles[:, [0]].clone().requires_grad_()
    mosaic.compose(mosaic.fixed([0], box), [0], new, box).sum().backward()
    assert new.grad is not None and (new.grad > 0).all()


def test_update_then_image_reflects_new_tiles():
    grid, tiles = _grid_and_tiles()
    mosaic = Mosaic(grid, tiles)
    before = mosaic.image().clone()
    idx = [0, 4]
    new = torch.rand_like(tiles[:, idx])
    mosaic.update(idx, new)
    expected = tiles.clone()
    expected[:, idx] = new
    after = mosaic.image()
    torch.testing.assert_close(after, _reference_blend(grid, expected))
    torch.testing.assert_close(after, Mosaic(grid, expected).image())
    assert not torch.allclose(after, before)
    torch.testing.assert_close(mosaic.tiles[:, idx], new)
