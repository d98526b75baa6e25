"""Guided starts: a small network fitted on a warm-start bank guesses each tile's latent.

All on tiny random generators (untrained, 32x32): fast, and enough to tell a guess from
chance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import napari_pulse
from conftest import drain
from napari_pulse import bank, guide
from napari_pulse.degrade import Degradation
from napari_pulse.generators.tiny import TinyGenerator
from napari_pulse.render import Renderer
from napari_pulse.search import SearchConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def fresh_memory():
    bank.CACHE.clear()
    guide.CACHE.clear()
    yield
    bank.CACHE.clear()
    guide.CACHE.clear()


def _pairs(gen, size: int, seed: int):
    render, degrade = Renderer(gen, 1, gen.resolution), Degradation("bicubic", 4)
    low = drain(bank.render_bank(render, degrade, size, seed, torch.device("cpu")))
    return low, bank.latents(gen, size, seed)


def test_the_guess_beats_chance_on_draws_it_never_saw_and_is_reproducible():
    gen = TinyGenerator(resolution=32)
    low, z = _pairs(gen, 1024, 0)
    fitted = drain(guide.fit(low, z, seed=0, steps=200))
    held_low, held_z = _pairs(gen, 256, 9)  # another seed: draws the guide never saw
    with torch.no_grad():
        guess = fitted(held_low)
    assert guess.shape == (256, *gen.latent_shape)
    torch.testing.assert_close(guess.norm(dim=-1), torch.ones(256, gen.latent_shape[0]))
    cos = torch.nn.functional.cosine_similarity(guess, held_z, dim=-1).mean(-1)
    shuffled = torch.nn.functional.cosine_similarity(guess, held_z.roll(1, 0), dim=-1).mean(-1)
    assert cos.median() > 0.1  # about 0.16 here; chance is 0
    assert abs(float(shuffled.median())) < 0.05
    again = drain(guide.fit(low, z, seed=0, steps=200))
    for a, b in zip(fitted.state_dict().values(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_starts_spread_from_the_guess_to_blind_directions_on_the_sphere():
    gen = TinyGenerator(resolution=32)
    low, z = _pairs(gen, 256, 0)
    fitted = drain(guide.fit(low, z, seed=0, steps=20))
    targets = low[:64]
    directions = torch.randn((64, 5, *gen.latent_shape), generator=torch.Generator().manual_seed(1))
    z0 = guide.starts(fitted, targets, directions)
    d = gen.latent_shape[-1]
    assert z0.shape == (64, 5, *gen.latent_shape)
    torch.testing.assert_close(z0.norm(dim=-1), torch.full((64, 5, z0.shape[2]), math.sqrt(d)))
    with torch.no_grad():
        guess = fitted(targets)
    cos = torch.nn.functional.cosine_similarity(z0, guess[:, None], dim=-1).mean(dim=(0, 2))
    np.testing.assert_allclose(cos.numpy(), [0.9, 0.7, 0.5, 0.3, 0.1], atol=0.06)


def _upscale(x, cfg, events, seed=0):
    return napari_pulse.upscale(
        x,
        generator="tiny",
        factor=4,
        steps=20,
        restarts=6,
        config=cfg,
        normalization="range",
        seed=seed,
        progress=events.append,
    )


def test_upscale_fits_the_guide_once_then_reuses_it(monkeypatch, tmp_path):
    monkeypatch.setenv("NAPARI_PULSE_CACHE", str(tmp_path))  # no bank or guide from elsewhere
    monkeypatch.setattr(guide, "STEPS", 60)
    x = np.random.default_rng(0).random((8, 8), dtype=np.float32)
    cfg = SearchConfig(bank=512, guide=True)
    events: list = []
    first = _upscale(x, cfg, events)
    stages = [e.stage for e in events]
    assert stages.index("bank") < stages.index("guide") < stages.index("search")
    assert stages.count("guide") == guide.events() == 3
    assert len({e.total for e in events}) == 1
    done = [e.done for e in events]
    assert done == sorted(done) and done[-1] <= events[0].total
    assert first.params["search"]["guide"] is True
    for forget in (False, True):  # from memory, then from the files alone
        if forget:
            bank.CACHE.clear()
            guide.CACHE.clear()
        again: list = []
        second = _upscale(x, cfg, again)
        assert {e.stage for e in again}.isdisjoint({"bank", "guide"})
        np.testing.assert_array_equal(second.image, first.image)
    # Another seed: the same bank and guide (nothing to build), other starts.
    other: list = []
    third = _upscale(x, cfg, other, seed=1)
    assert {e.stage for e in other}.isdisjoint({"bank", "guide"})
    assert not np.array_equal(third.image, first.image)


def test_guided_starts_need_a_bank():
    with pytest.raises(ValueError, match="guided starts are fitted on a warm-start bank"):
        x = np.zeros((8, 8), np.float32)
        napari_pulse.upscale(x, generator="tiny", factor=4, config=SearchConfig(guide=True))
