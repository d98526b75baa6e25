"""StyleGAN2 and the native format: exact save/load round trip, conv clamping."""

from __future__ import annotations

import json

import pytest
import torch

from napari_pulse.generators import ModelCard, load, registry
from napari_pulse.generators.native import load_native, load_native_net, read_card, save_native
from napari_pulse.generators.stylegan2 import (
    StyleGAN2,
    StyleGAN2Config,
    StyleGAN2Generator,
    gaussian_fit,
)

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = dict(resolution=16, channels=1, style_dim=8, n_mlp=2, widths={4: 8, 8: 8, 16: 4})


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_PULSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "_loaded", {})


def random_net(seed: int = 0, **overrides) -> StyleGAN2:
    """A StyleGAN2 whose every parameter and buffer is random (noise weights included)."""
    net = StyleGAN2(StyleGAN2Config(**{**CONFIG, **overrides}))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in net.state_dict().values():
            t.add_(0.3 * torch.randn(t.shape, generator=g))
    return net.eval().requires_grad_(False)


CARD = ModelCard(
    name="roundtrip",
    domain="test nuclei",
    description="random weights",
    normalization="percentile",
    pixel_size_um=0.65,
    training_data="none",
    license="CC0",
    extra={"made_by": "tests/test_stylegan2.py"},
)


def test_native_round_trip_is_exact(tmp_path):
    net = random_net(conv_clamp=0.5)
    gaussian = gaussian_fit(net, n=2000, batch=500)
    path = save_native(tmp_path / "g.safetensors", net, CARD, gaussian)
    assert json.loads(path.with_suffix(".json").read_text())["name"] == "roundtrip"
    assert read_card(path)["config"]["conv_clamp"] == 0.5

    net2, card2, gaussian2 = load_native_net(path)
    assert card2 == CARD and net2.config == net.config
    a, b = net.state_dict(), net2.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(x, y) for x, y in zip(gaussian, gaussian2, strict=True))

    before = StyleGAN2Generator(net, CARD, gaussian=gaussian)
    after = load(path)  # through the registry, by path
    z = before.sample_latents(3, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(before.synthesize(z), after.synthesize(z))


def test_native_file_without_fit_gets_a_cached_one(tmp_path):
    path = save_native(tmp_path / "nofit.safetensors", random_net(1), CARD)
    gen = load_native(path)
    assert list((tmp_path / "cache" / "gaussian").iterdir())
    assert torch.isfinite(gen.gauss_std).all() and (gen.gauss_std > 0).all()


def test_older_cards_without_conv_clamp_still_load():
    d = StyleGAN2Config(**CONFIG).to_dict()
    del d["conv_clamp"]
    assert StyleGAN2Config.from_dict(d).conv_clamp is None


def test_conv_clamp_bounds_the_layers_and_changes_the_image():
    clamped, free = random_net(2, conv_clamp=0.25), random_net(2)
    seen = []
    for m in [clamped.conv1, *clamped.convs]:
        m.register_forward_hook(lambda mod, inp, out: seen.append(out.abs().max().item()))
    w = torch.randn(2, clamped.n_latent, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = clamped.synthesis(w), free.synthesis(w)
    assert len(seen) == 5 and max(seen) == 0.25  # reached, not exceeded
    assert (a - b).abs().max() > 1e-2
