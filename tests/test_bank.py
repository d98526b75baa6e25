"""Warm starts from a bank of prior draws (tiny random generators: fast and deterministic)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_pulse
from conftest import drain
from napari_pulse import bank
from napari_pulse.degrade import Degradation
from napari_pulse.generators.tiny import TinyGenerator
from napari_pulse.render import Renderer
from napari_pulse.search import SearchConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def fresh_memory():
    bank.CACHE.clear()
    yield
    bank.CACHE.clear()


def _setup(gen=None):
    gen = gen or TinyGenerator(resolution=32)
    return gen, Renderer(gen, gen.channels, gen.resolution), Degradation("bicubic", 4)


def _bank_image(gen, render, degrade, index: int, seed: int) -> torch.Tensor:
    z, noise = bank.gather(gen, torch.tensor([[index]]), seed, torch.device("cpu"))
    with torch.no_grad():
        return degrade(render(z[0], [n[0] for n in noise] or None))


def test_nearest_finds_the_entry_itself_and_gather_redraws_it():
    gen, render, degrade = _setup()
    low = drain(bank.render_bank(render, degrade, 600, 3, torch.device("cpu")))
    assert low.shape == (600, 1, 8, 8)
    # Entries from different chunks come back exactly as the bank rendered them.
    targets = torch.cat([_bank_image(gen, render, degrade, i, 3) for i in (7, 300, 599)])
    torch.testing.assert_close(targets, low[[7, 300, 599]])
    index = bank.nearest(low, targets, 5)
    assert index.shape == (3, 5)
    assert index[:, 0].tolist() == [7, 300, 599]
    assert all(len(set(row)) == 5 for row in index.tolist())  # distinct starts


def _starts(gen, render, degrade, target, ticks):
    key = bank.key_for(render, degrade, 300, 0)
    low = bank.CACHE.get(key)
    if low is None:
        events = bank.build(render, degrade, key, torch.device("cpu"))
        low = drain(events, ticks)
    return bank.starts(gen, low, target, 4, 0, torch.device("cpu"))


def test_warm_starts_are_cached_in_memory_and_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_PULSE_CACHE", str(tmp_path))
    gen, render, degrade = _setup()
    target = _bank_image(gen, render, degrade, 42, 0)
    ticks: list = []
    z, noise = _starts(gen, render, degrade, target, ticks)
    assert z.shape == (1, 4, *gen.latent_shape)
    assert [(t.stage, t.done, t.total) for t in ticks] == [("bank", i, 5) for i in range(1, 6)]
    files = list((tmp_path / "bank").glob("*.safetensors"))
    assert len(files) == 1

    ticks.clear()
    z2, _ = _starts(gen, render, degrade, target, ticks)
    assert ticks == []  # from memory: nothing rendered
    bank.CACHE.clear()
    z3, _ = _starts(gen, render, degrade, target, ticks)
    assert ticks == []  # from the file
    torch.testing.assert_close(z2, z)
    torch.testing.assert_close(z3, z)

    bank.CACHE.clear()
    files[0].write_bytes(b"not a safetensors file")
    z4, _ = _starts(gen, render, degrade, target, ticks)
    assert len(ticks) == 5  # a damaged file is rendered again
    torch.testing.assert_close(z4, z)


def test_fingerprint_follows_the_weights():
    a, b = TinyGenerator(seed=0), TinyGenerator(seed=0)
    assert bank.fingerprint(a) == bank.fingerprint(b)
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-3
    assert bank.fingerprint(a) != bank.fingerprint(b)
    assert bank.fingerprint(TinyGenerator(seed=1)) != bank.fingerprint(a)


def test_upscale_starts_from_the_nearest_bank_entry():
    """An input that is exactly a bank entry's low-res image is fitted from the first step
    with a bank; blind starts with the same tiny budget are far from it."""
    gen, render, degrade = _setup()
    image = _bank_image(gen, render, degrade, 123, 5)[0, 0].numpy()
    kw = dict(generator=gen, factor=4, steps=1, restarts=4, seed=5, normalization="range")
    events: list = []
    warm = napari_pulse.upscale(image, config=SearchConfig(bank=512), progress=events.append, **kw)
    stages = [e.stage for e in events]
    assert stages[:8] == ["bank"] * 8 and "search" in stages
    assert len({e.total for e in events}) == 1  # one job total, the bank included
    assert [e.done for e in events] == sorted(e.done for e in events)
    assert events[-1].done == events[-1].total
    cold = napari_pulse.upscale(image, config=SearchConfig(bank=0), **kw)
    assert warm.lr_psnr > 60
    assert cold.lr_psnr < 40
    assert warm.params["search"]["bank"] == 512
    assert warm.atypical_tiles.shape == warm.lr_psnr_tiles.shape
    assert warm.atypicality == 0.0  # the input is one of the bank's own images
    assert cold.atypicality is None and cold.atypical_tiles is None
    again = napari_pulse.upscale(image, config=SearchConfig(bank=512), **kw)
    np.testing.assert_array_equal(again.image, warm.image)


def test_atypicality_tells_generator_images_from_noise():
    gen, render, degrade = _setup()
    low = drain(bank.render_bank(render, degrade, 1024, 0, torch.device("cpu")))
    with torch.no_grad():  # fresh draws of the same generator: typical by construction
        own = degrade(render(gen.sample_latents(64, torch.Generator().manual_seed(99)), None))
    noise = torch.rand((8, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    a_own, a_noise = bank.atypicality(low, own), bank.atypicality(low, noise)
    assert ((a_own >= 0) & (a_own <= 1)).all()
    assert 0.2 < float(a_own.median()) < 0.8  # about the middle of the generator's own
    assert (a_noise == 1).all()
    with pytest.raises(ValueError, match="two entries"):
        bank.atypicality(low[:1], own)


def test_cancel_while_the_bank_is_built_stops_and_caches_nothing():
    gen, render, degrade = _setup()
    image = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    seen: list = []
    with pytest.raises(napari_pulse.Cancelled):
        napari_pulse.upscale(
            image,
            generator=gen,
            factor=4,
            steps=2,
            restarts=2,
            config=SearchConfig(bank=1024),
            progress=seen.append,
            cancel=lambda: len(seen) >= 2,
        )
    assert [e.stage for e in seen] == ["bank", "bank"]  # stopped within one piece
    assert bank.CACHE.get(bank.key_for(render, degrade, 1024, 0)) is None


def test_a_quick_wave_that_succeeds_skips_the_search():
    gen, render, degrade = _setup()
    image = _bank_image(gen, render, degrade, 77, 0)[0, 0].numpy()
    events: list = []
    cfg = SearchConfig(bank=256, quick=True)
    r = napari_pulse.upscale(
        image, generator=gen, factor=4, steps=50, restarts=16, config=cfg,
        normalization="range", progress=events.append,
    )  # fmt: skip
    stages = {e.stage for e in events}
    assert "quick" in stages and "search" not in stages  # every tile at eps after the wave
    assert r.success and r.params["quick_wave_tiles_at_eps"] == 1
    assert [e.done for e in events] == sorted(e.done for e in events)


def test_tiles_the_quick_wave_leaves_above_eps_get_the_search():
    gen, render, degrade = _setup()
    # Left: a bank image (explained by the quick wave); right: noise (not explained).
    left = _bank_image(gen, render, degrade, 5, 0)[0, 0].numpy()
    noise = np.random.default_rng(3).random((8, 8)).astype(np.float32)
    stack = np.stack([left, noise])
    events: list = []
    kw = dict(generator=gen, factor=4, steps=20, restarts=8, normalization="range")
    r = napari_pulse.upscale(
        stack, config=SearchConfig(bank=256, quick=True), progress=events.append, **kw
    )
    quick_only = napari_pulse.upscale(stack, config=SearchConfig(bank=256, quick=True), **kw)
    assert r.params["quick_wave_tiles_at_eps"] == 1
    assert [e.stage for e in events].count("search") > 0
    assert r.lr_psnr_tiles[0].item() > 40 and not r.success_tiles[1].item()
    np.testing.assert_array_equal(quick_only.image, r.image)  # deterministic
    assert [e.done for e in events] == sorted(e.done for e in events)
    assert all(e.done <= e.total for e in events)
    assert events[-1].total > events[0].total  # the tile left above eps, counted as it is searched


def test_a_quick_wave_needs_a_bank():
    gen, _, _ = _setup()
    with pytest.raises(ValueError, match="warm-start bank"):
        napari_pulse.upscale(
            np.zeros((8, 8), np.float32), generator=gen, factor=4,
            config=SearchConfig(quick=True),
        )  # fmt: skip
