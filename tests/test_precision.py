"""The search's passes in bfloat16 where the CPU computes it natively; the result's images
always in float32. Tiny random generators."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_pulse
from napari_pulse import render
from napari_pulse.generators.tiny import TinyGenerator
from napari_pulse.render import Renderer, pass_dtype
from napari_pulse.search import SearchConfig

pytestmark = pytest.mark.usefixtures("one_thread")

KW = dict(generator="tiny", factor=4, steps=20, restarts=4)


def test_fast_passes_are_bfloat16_with_gradients_and_float32_without():
    gen = TinyGenerator()
    z = gen.sample_latents(3, torch.Generator().manual_seed(0))
    plain = Renderer(gen, 1, gen.resolution)
    fast = Renderer(gen, 1, gen.resolution, torch.bfloat16)
    with torch.no_grad():
        want = plain(z, None)
        assert torch.equal(fast(z, None), want)  # no gradients: float32, as the result is made
    got = fast(z.clone().requires_grad_(), None)
    assert got.dtype == torch.float32 and got.requires_grad
    diff = (got.detach() - want).abs().max().item()
    assert 0 < diff < 0.05  # bfloat16 arithmetic: close, not equal


def test_auto_follows_the_cpu_and_an_unknown_precision_is_refused(monkeypatch):
    monkeypatch.setattr(render, "native_bfloat16", lambda device: True)
    assert pass_dtype("auto", "cpu") is torch.bfloat16
    assert pass_dtype("float32", "cpu") is None
    monkeypatch.setattr(render, "native_bfloat16", lambda device: False)
    assert pass_dtype("auto", "cpu") is None and pass_dtype("bfloat16", "cpu") is torch.bfloat16
    assert not render.native_bfloat16("meta")  # not a CPU: not measured, float32
    with pytest.raises(ValueError, match="precision must be one of"):
        napari_pulse.iter_upscale(np.zeros((8, 8), np.float32), config=SearchConfig(precision="x"))


@pytest.mark.parametrize("shape", [(8, 8), (20, 20)])  # one tile (no seam refinement), 9
def test_a_bfloat16_search_gives_a_result_rendered_in_float32(shape, monkeypatch):
    img = (np.random.default_rng(1).random(shape) * 255).astype(np.uint8)
    a = napari_pulse.upscale(img, config=SearchConfig(precision="float32"), **KW)
    calls: list[tuple[bool, int]] = []
    real = Renderer._render

    def spy(self, z, noise, offsets):
        calls.append((torch.is_grad_enabled(), z.shape[0]))
        return real(self, z, noise, offsets)

    monkeypatch.setattr(Renderer, "_render", spy)
    b = napari_pulse.upscale(img, config=SearchConfig(precision="bfloat16"), **KW)
    assert a.params["precision"] == "float32" and b.params["precision"] == "bfloat16"
    assert b.params["search"]["precision"] == "bfloat16"
    assert abs(a.lr_psnr - b.lr_psnr) < 3.0 and not np.array_equal(a.image, b.image)
    # The search's passes had gradients (bfloat16); the last render, which made the
    # result's tiles, had none (float32) and covered every tile.
    assert calls[0][0] and calls[-1] == (False, b.lr_psnr_tiles.size)
