"""Memory bounded by design: every tile's random starts come from its own stream (so no
stage draws them all up front), a search stage holds one chunk of starts at a time, and a
large job says what it will take before it starts. Tiny random generators throughout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_pulse
from napari_pulse import estimate, pipeline, refine, search
from napari_pulse.job import BLIND, ENCODER
from napari_pulse.options import Options
from napari_pulse.search import SearchConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _job(size=16, factor=4, **kw):
    img = (np.random.default_rng(0).random((size, size)) * 255).astype(np.uint8)
    setup = Options(generator="tiny", factor=factor, **kw).resolve(rgb=False)
    return img, setup, pipeline.prepare(img, False, setup)[1]


def test_a_tiles_starts_do_not_depend_on_which_tiles_are_drawn_with_it():
    _, _, job = _job(size=32)  # 16 tiles of 8x8
    every = job.blind_starts(torch.arange(job.n_units), 5)
    some = job.blind_starts(torch.tensor([7, 2]), 5)
    torch.testing.assert_close(some[0], every[0][[7, 2]], rtol=0, atol=0)
    for a, b in zip(some[1], every[1], strict=True):
        torch.testing.assert_close(a, b[[7, 2]], rtol=0, atol=0)
    other = job.draw(torch.tensor([7]), [(5, 3)], ENCODER)[0]
    assert not torch.equal(other, job.draw(torch.tensor([7]), [(5, 3)], BLIND)[0])
    assert job.blind_starts(torch.tensor([], dtype=torch.long), 5)[0].shape[0] == 0


@pytest.mark.parametrize("encoder", [False, True])
def test_chunk_sizes_do_not_change_the_result(monkeypatch, encoder, tmp_path):
    img = (np.random.default_rng(3).random((24, 24)) * 255).astype(np.uint8)
    cfg = SearchConfig(encoder=encoder, batch_size=12, explore_steps=2, keep=3)
    kw = dict(generator="tiny", factor=4, steps=4, restarts=4, config=cfg, samples=1)
    events_a: list = []
    a = napari_pulse.upscale(img, progress=events_a.append, **kw)
    monkeypatch.setattr(search, "CHUNK_STARTS", 1)  # one batch of each rung at a time
    monkeypatch.setattr(refine, "CHUNK", 1)
    # batches of 3 units (4 starts each) exploring, 4 units (3 kept) refining: chunks of 12
    # units, so the 16 tiles' first chunk ends inside no batch of either rung
    assert Options(**kw).resolve(False).cfg.chunk_units() == 12
    events_b: list = []
    b = napari_pulse.upscale(img, progress=events_b.append, **kw)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.params["passes_per_tile"] == b.params["passes_per_tile"]
    assert [e.done for e in events_a] == [e.done for e in events_b]
    assert events_a[-1].total == events_b[-1].total


def test_chunks_are_whole_batches_of_every_rung():
    cfg = SearchConfig(restarts=96, batch_size=64)
    units = cfg.chunk_units()
    assert units % (64 // 4) == 0  # the refining rung's batches hold 16 units of 4 starts
    assert units * 96 <= max(search.CHUNK_STARTS, 96 * 16)
    assert SearchConfig(restarts=3, batch_size=64).chunk_units() >= 21
    wide = SearchConfig(restarts=96, batch_size=512)  # a GPU's width: whole batches cost more
    assert wide.chunk_units() % (512 // 96) == 0 and wide.chunk_units() % (512 // 4) == 0


def test_one_sample_hands_on_one_candidate_per_tile():
    img, setup, _ = _job(size=16, steps=3, restarts=4)
    stream = pipeline.stream(img, False, setup)
    state_sizes = []
    original = search.LatentSearch.run

    def spy(self, job, state):
        out = yield from original(self, job, state)
        state_sizes.append(out.cands.mse.shape[1])
        return out

    search.LatentSearch.run = spy
    try:
        for _ in stream:
            pass
    finally:
        search.LatentSearch.run = original
    assert state_sizes == [1]


def test_a_large_job_says_what_it_will_take_before_it_starts(monkeypatch, capsys):
    monkeypatch.setattr(estimate, "LARGE_UNITS", 4)
    img = (np.random.default_rng(0).random((24, 24)) * 255).astype(np.uint8)  # 16 tiles
    stream = napari_pulse.iter_upscale(img, generator="tiny", factor=4, steps=2, restarts=2)
    first = next(stream)
    stream.close()
    assert first.stage == "plan" and first.done == 0
    assert first.note.startswith("large job: 16 tiles; about") and "GiB of memory" in first.note
    assert "passes a second" in first.note


def test_a_small_job_says_nothing_and_the_estimate_grows_with_the_tiles():
    img, setup, job = _job(size=16)
    first = next(napari_pulse.iter_upscale(img, generator="tiny", factor=4, steps=2, restarts=2))
    assert first.note == ""
    stages = pipeline.build(setup, job)
    small = estimate.estimate(job, stages, rate=100.0)
    _, setup2, big_job = _job(size=64)
    big = estimate.estimate(big_job, pipeline.build(setup2, big_job), rate=100.0)
    assert big.units > 10 * small.units and big.bytes > small.bytes
    assert big.seconds == pytest.approx(big.units / small.units * small.seconds)
