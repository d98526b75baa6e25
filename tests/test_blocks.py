"""Large jobs in blocks of whole tiles (memory bounded whatever the image size). The block
sizes are made small here so that small images are "large"; tiny random generators."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_pulse
from napari_pulse import blocks, pipeline
from napari_pulse.job import Job
from napari_pulse.options import Options
from napari_pulse.tiling import TileGrid

pytestmark = pytest.mark.usefixtures("one_thread")

KW = dict(generator="tiny", factor=4, steps=6, restarts=3)


def _image(shape=(48, 48), seed=0):
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(blocks, "BLOCK_UNITS", 10)
    monkeypatch.setattr(blocks, "BLOCK_TILES", 3)


def test_small_jobs_run_whole():
    assert blocks.plan(TileGrid.plan((48, 48), (8, 8), 4), 1) is None


def test_blocks_cover_the_grid_with_the_images_own_tiles(small_blocks):
    grid = TileGrid.plan((46, 52), (8, 8), 4)
    parts = blocks.plan(grid, 2)
    assert parts is not None
    covered = set()
    for b in parts:
        y0, y1, x0, x1 = b.window(grid)
        local = b.grid(grid)
        shifted = [(y + y0, x + x0) for y, x in local.origins]
        ids = b.units(grid, len(grid))
        assert len(ids) == len(local) * (b.planes.stop - b.planes.start) <= blocks.BLOCK_UNITS
        for k, (p, t) in enumerate(divmod(int(u), len(grid)) for u in ids):
            assert grid.origins[t] == shifted[k % len(local)]  # the image's own tile
            covered.add((p, t))
    assert covered == {(p, t) for p in range(2) for t in range(len(grid))}
    rows = sorted({(b.r0, b.r1) for b in parts})
    assert all(a[1] == b[0] for a, b in zip(rows, rows[1:], strict=False))  # share a row


def test_a_tile_gets_the_same_starts_in_every_block(small_blocks):
    img = _image()
    setup = Options(**KW).resolve(rgb=False)
    _, whole = pipeline.prepare(img, False, setup)
    every = whole.blind_starts(torch.arange(whole.n_units), 3)[0]
    seen = 0
    for _, job in blocks.jobs(whole, blocks.plan(whole.grid, 1)):
        z = job.blind_starts(torch.arange(job.n_units), 3)[0]
        torch.testing.assert_close(z, every[job.ids], rtol=0, atol=0)
        seen += 1
    assert seen > 4


def test_a_blocked_upscale_is_a_whole_result(small_blocks, monkeypatch):
    img = np.stack([_image(seed=1), _image(seed=2)])
    made: list[int] = []
    real = Job.make

    def spy(*args, **kwargs):
        job = real(*args, **kwargs)
        if job.live.numel():
            made.append(job.n_units)
        return job

    monkeypatch.setattr(Job, "make", spy)
    events: list = []
    r = napari_pulse.upscale(img, progress=events.append, samples=2, **KW)
    assert r.image.shape == (2, 192, 192) and r.samples.shape == (2, 2, 192, 192)
    assert r.params["blocks"] == 32 and max(made) <= blocks.BLOCK_UNITS
    assert r.lr_psnr_tiles.shape == (2, 8, 8) and np.isfinite(r.lr_psnr_tiles).all()
    done = [e.done for e in events]
    assert done == sorted(done) and {e.total for e in events} == {events[-1].total}
    assert done[-1] <= events[-1].total
    whole_view = events[len(events) // 2].preview()
    assert whole_view.shape == (2, 192, 192) and whole_view.dtype == np.uint8
    shared = r.params["passes_per_tile"]
    assert shared["max"] > shared["median"]  # tiles on block borders were searched twice


def test_one_block_gives_the_whole_jobs_result(monkeypatch):
    img = (np.random.default_rng(4).random((40, 40))).astype(np.float32)
    whole = napari_pulse.upscale(img, **KW)
    monkeypatch.setattr(blocks, "BLOCK_UNITS", 1)  # "large", but one block holds it all
    one = napari_pulse.upscale(img, **KW)
    assert one.params["blocks"] == 1
    np.testing.assert_allclose(one.image, whole.image, rtol=0, atol=1e-6)
    assert one.params["passes_per_tile"] == whole.params["passes_per_tile"]


def test_the_first_event_of_a_large_blocked_job_has_the_runs_total(small_blocks, monkeypatch):
    from napari_pulse import estimate

    monkeypatch.setattr(estimate, "LARGE_UNITS", 4)
    events: list = []
    napari_pulse.upscale(_image(), progress=events.append, **KW)
    assert events[0].stage == "plan" and events[0].note.startswith("large job")
    assert {e.total for e in events} == {events[0].total}


def test_the_preview_shows_planes_not_reached_yet_as_the_smooth_input(small_blocks):
    img = np.stack([_image(seed=5), _image(seed=6)])  # one plane per group of blocks
    views: list[np.ndarray] = []

    def grab(event):
        if event.preview is not None and event.done > 0.6 * event.total and not views:
            views.append(event.preview())

    napari_pulse.upscale(img, progress=grab, **KW)
    second = views[0][1]  # the second plane, part of it not reached yet
    assert (second == 0).mean() < 0.05  # not black where no block is done


def test_blocks_keep_one_monotone_ledger_as_their_searches_are_planned_again(small_blocks):
    from napari_pulse.search import SearchConfig

    events: list = []
    config = SearchConfig(bank=256, quick=True)  # a search after the quick wave: planned late
    r = napari_pulse.upscale(
        _image((40, 40)), progress=events.append, config=config, eps=0.03,
        **{**KW, "restarts": 8},
    )  # fmt: skip
    assert r.params["blocks"] > 1
    done = [e.done for e in events]
    assert done == sorted(done) and all(e.done <= e.total for e in events)
    assert events[-1].done == events[-1].total  # the bar ends full
    assert len({e.total for e in events}) > 1
