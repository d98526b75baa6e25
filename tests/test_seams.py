"""A tiled upscale shows no seams: the blended mosaic is refined on its own downscaling loss."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import napari_pulse
from conftest import drain
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
    real = blend.SeamBlend._round

    def spy(self, job, mosaic, groups, *args):
        seen.extend(list(g) for g in groups)
        return (yield from real(self, job, mosaic, groups, *args))

    monkeypatch.setattr(blend.SeamBlend, "_round", spy)
    low = np.random.default_rng(0).random((18, 18)).astype(np.float32)  # 3x3 tiles
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
    assert seen == [list(range(9))] and SearchConfig().blend_steps_for(9) == 60  # the defaults
    # 0.1 for a long refinement of several tiles; 0.05 for one tile or a short one
    assert SearchConfig().blend_lr_for(9) == 0.1 and SearchConfig().blend_lr_for(1) == 0.05
    assert SearchConfig(steps=150).blend_lr_for(9) == 0.05
    assert SearchConfig(blend_lr=0.2).blend_lr_for(1) == 0.2
    # the refinement's budget follows the search's steps up to 400, and no further
    assert [SearchConfig(steps=s).blend_steps_for(9) for s in (150, 400, 800, 4000)] == [
        22, 60, 60, 60
    ]  # fmt: skip
    assert [SearchConfig(steps=s).blend_steps_for(1) for s in (150, 400, 800)] == [37, 100, 100]


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


def _before_the_blend(samples: int = 1, width: int = 8):
    """A job of 7x7 tiles (the tiny random generator, a unit-test stand-in), its seam
    refinement stage and the state the stages before it leave."""
    from napari_pulse import blend, pipeline
    from napari_pulse.options import Options
    from napari_pulse.search import SearchConfig

    low = np.random.default_rng(1).random((40, 40)).astype(np.float32)
    cfg = SearchConfig(batch_size=width, blend_tiles=4, blend_steps=4, precision="float32")
    opts = Options(generator="tiny", factor=4, steps=6, restarts=2, samples=samples, config=cfg)
    setup = opts.resolve(False)
    _, job = pipeline.prepare(low, False, setup)
    stages = pipeline.build(setup, job)
    assert isinstance(stages[-1], blend.SeamBlend)
    return job, stages[-1], drain(pipeline.run(job, stages[:-1]))


@pytest.mark.usefixtures("one_thread")
def test_groups_run_side_by_side_when_apart_and_never_beyond_a_batch():
    from napari_pulse import blend

    for samples, width, most in ((1, 8, 2), (1, 12, 3), (2, 8, 1), (1, 4, 1)):
        job, _, _ = _before_the_blend(samples, width)
        rounds = blend._rounds(job)
        tiles = sorted(i for groups in rounds for g in groups for i in g)
        assert tiles == list(range(len(job.grid))), (samples, width)  # every tile once
        assert max(len(r) for r in rounds) == most, (samples, width)
        margin = math.ceil(job.degrade.margin / job.grid.factor)
        for groups in rounds:
            assert sum(len(g) for g in groups) * job.n_mosaics <= width
            for a, b in itertools.combinations(groups, 2):
                assert len(a) == len(b) and blend._apart(job.grid, a, b, margin)
    assert not blend._apart(job.grid, [0, 1], [2, 3], margin)  # neighbours share pixels


@pytest.mark.usefixtures("one_thread")
def test_groups_refined_side_by_side_end_where_each_ends_alone():
    from napari_pulse import blend
    from napari_pulse.tiling import Mosaic

    job, stage, state = _before_the_blend()
    pair = next(r for r in blend._rounds(job) if len(r) == 2)
    c = state.chosen

    def refined(rounds):
        z = blend.per_mosaic(job, c.z).clone()
        noise = [blend.per_mosaic(job, n).clone() for n in c.noise]
        mosaic = Mosaic(job.grid, blend.per_mosaic(job, c.images))
        for groups in rounds:
            drain(stage._round(job, mosaic, groups, z, noise, {}))
        return z, mosaic.image()

    together, alone = refined([pair]), refined([[pair[0]], [pair[1]]])
    start = blend.per_mosaic(job, c.z)
    moved = [i for g in pair for i in g]
    assert not torch.allclose(together[0][:, moved], start[:, moved])  # it did refine
    for a, b in zip(together, alone, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


class _FramedTiny:
    """Makes the tiny (untrained, random) generator draw a bright 2-px frame on every image:
    a generator whose own edge is unlike its inside, as the nuclei generator's is."""

    @staticmethod
    def make():
        from napari_pulse.generators.tiny import TinyGenerator

        class FramedTiny(TinyGenerator):
            def synthesize(self, latents, noise=None, offsets=None, features=None):
                x = super().synthesize(latents, noise, offsets, features).clone()
                x[..., :2, :] = x[..., -2:, :] = x[..., :2] = x[..., -2:] = 1.0
                return x

        return FramedTiny(name="framed-tiny")


@pytest.mark.usefixtures("one_thread")
def test_the_generators_own_edge_falls_outside_an_image_of_several_tiles():
    gen = _FramedTiny.make()
    low = np.full((18, 18), 0.3, np.float32) + np.random.default_rng(0).random((18, 18)) * 0.05
    r = napari_pulse.upscale(low, generator=gen, factor=4, steps=4, restarts=2)
    outer = np.concatenate([r.image[0], r.image[-1], r.image[:, 0], r.image[:, -1]])
    assert outer.max() < 0.9  # the frame (1.0) was cut away with the border
    assert r.params["tiles"]["border"] == [1, 1] and r.image.shape == (72, 72)
    one = napari_pulse.upscale(low[:8, :8], generator=gen, factor=4, steps=4, restarts=2)
    assert one.params["tiles"]["border"] == [0, 0]  # one tile: one generator image, edge and all
    assert np.allclose(one.image[0], 1.0) and np.allclose(one.image[:, -1], 1.0)


def test_the_search_reads_only_the_users_pixels_and_reflects_at_their_edge():
    from napari_pulse import pipeline
    from napari_pulse.options import Options

    low = np.random.default_rng(1).random((18, 18)).astype(np.float32)
    setup = Options(generator="tiny", factor=4).resolve(False)
    _, job = pipeline.prepare(low, False, setup)
    assert job.real_box == (1, 19, 1, 19) and tuple(job.planes.shape[-2:]) == (20, 20)
    units = torch.arange(job.n_units)
    img = torch.rand((job.n_units, 1, 32, 32), generator=torch.Generator().manual_seed(0))
    mse = job.lr_mse(img, job.lr_tiles, units)
    # Tile 0 is the top-left corner: its user's pixels are rows and columns 1.. of it, and
    # the operator reflects at their edge, as it does on the output.
    want = (job.degrade(img[:1, :, 4:, 4:]) - job.lr_tiles[:1, :, 1:, 1:]).pow(2).mean()
    assert float(mse[0]) == pytest.approx(float(want), rel=1e-6)
    origins = enumerate(job.grid.origins)
    inner = [i for i, (y, x) in origins if 0 < y and 0 < x and y + 8 < 20 and x + 8 < 20]
    whole = (job.degrade(img[inner]) - job.lr_tiles[inner]).pow(2).flatten(1).mean(1)
    assert torch.allclose(mse[inner], whole)  # a tile inside the image: all of it
    changed = job.lr_tiles.clone()
    changed[0, :, 0, :] = 5.0  # the reflected border: no loss reads it
    assert torch.equal(job.lr_mse(img, changed, units), mse)


def test_a_wide_operator_reads_the_users_pixels_reflected_as_often_as_it_needs():
    from napari_pulse import pipeline
    from napari_pulse.options import Options

    low = np.random.default_rng(2).random((10, 10)).astype(np.float32)
    setup = Options(generator="tiny", factor=4, degradation="psf", sigma=12.0).resolve(False)
    _, job = pipeline.prepare(low, False, setup)
    assert job.degrade.pad > 32 and job.real_box == (1, 11, 1, 11)  # wider than a tile
    img = torch.rand((job.n_units, 1, 32, 32), generator=torch.Generator().manual_seed(0))
    mse = job.lr_mse(img, job.lr_tiles, torch.arange(job.n_units))
    assert torch.isfinite(mse).all() and len(mse) == job.n_units
