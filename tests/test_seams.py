"""A tiled upscale shows no seams: the blended mosaic is refined on its own downscaling loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_pulse
from napari_pulse.degrade import downscale
from napari_pulse.generators import load
from napari_pulse.tiling import TileGrid


def _jumps(img: np.ndarray, edges: set[int]) -> tuple[float, float]:
    """Mean |difference| between neighbouring rows/cols across tile edges, and elsewhere."""
    dy = np.abs(np.diff(img, axis=0)).mean(axis=1)
    dx = np.abs(np.diff(img, axis=1)).mean(axis=0)
    mask = np.zeros(len(dy), bool)
    mask[[e - 1 for e in edges]] = True
    return float(np.r_[dy[mask], dx[mask]].mean()), float(np.r_[dy[~mask], dx[~mask]].mean())


@pytest.mark.usefixtures("one_thread")
def test_tiled_result_has_no_seams():
    g = load("tiny")  # untrained random 32x32 generator: cheap, and its images are smooth
    with torch.no_grad():
        z = g.sample_latents(4, torch.Generator().manual_seed(0))
        quads = ((g.synthesize(z) + 1) / 2)[:, 0].numpy()
    hr = np.block([[quads[0], quads[1]], [quads[2], quads[3]]])  # 64x64 truth
    low = downscale(hr, 4)  # 16x16 low-res: 3x3 tiles of 8x8 at factor 4
    r = napari_pulse.upscale(
        low, generator="tiny", factor=4, steps=60, restarts=8, normalization="range"
    )
    grid = TileGrid.plan(
        low.shape, tuple(r.params["tiles"]["tile"]), 4, r.params["tiles"]["overlap"]
    )
    assert len(grid) > 1
    edges = {e * 4 for y in grid.rows for e in (y, y + grid.tile[0])} - {0, 64}
    on, off = _jumps(r.image.astype(np.float64), edges)
    assert on <= 1.5 * off, (on, off)
    assert r.lr_psnr > 25


@pytest.mark.usefixtures("one_thread")
def test_the_seam_refinement_refines_groups_of_tiles_in_turn(monkeypatch):
    from napari_pulse import blend
    from napari_pulse.search import SearchConfig

    seen: list[list[int]] = []
    real = blend.SeamBlend._chunk

    def spy(self, job, mosaic, idx, *args):
        seen.append(list(idx))
        return (yield from real(self, job, mosaic, idx, *args))

    monkeypatch.setattr(blend.SeamBlend, "_chunk", spy)
    low = np.random.default_rng(0).random((20, 20)).astype(np.float32)  # 3x3 tiles
    events: list = []
    cfg = SearchConfig(blend_tiles=4, blend_steps=5)
    r = napari_pulse.upscale(
        low, generator="tiny", factor=4, steps=8, restarts=2, config=cfg, progress=events.append
    )
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]  # every tile once, 4 at a time
    blends = [e for e in events if e.stage == "blend"]
    assert {e.batches for e in blends} == {3} and max(e.batch for e in blends) == 3
    assert r.params["search"]["blend_tiles"] == 4
    seen.clear()
    napari_pulse.upscale(low, generator="tiny", factor=4, steps=8, restarts=2)
    assert seen == [list(range(9))] and SearchConfig().blend_steps_for(9) == 75  # the defaults


def test_a_refinement_group_never_holds_more_images_than_a_batch():
    from napari_pulse import blend, pipeline
    from napari_pulse.options import Options
    from napari_pulse.search import SearchConfig

    low = np.zeros((40, 40), np.float32)  # 6x6 tiles of the tiny generator at factor 4
    for samples, width, want in ((1, 64, 16), (8, 64, 8), (4, 64, 16), (1, 8, 8)):
        cfg = SearchConfig(batch_size=width)
        setup = Options(generator="tiny", factor=4, samples=samples, config=cfg).resolve(False)
        _, job = pipeline.prepare(low, False, setup)
        chunks = blend._chunks(job)
        assert max(len(c) for c in chunks) == want, (samples, width)
        assert sorted(i for c in chunks for i in c) == list(range(len(job.grid)))


def test_a_refinement_group_of_no_tiles_is_refused():
    from napari_pulse.search import SearchConfig

    with pytest.raises(ValueError, match="blend_tiles"):
        napari_pulse.upscale(np.zeros((8, 8), np.float32), config=SearchConfig(blend_tiles=0))
