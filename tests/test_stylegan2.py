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


def _plain_modulated(conv, x, style):
    """The modulated convolution one operation per term (rosinality's arithmetic)."""
    s = conv.modulation(style)
    weight = conv.scale * conv.weight[0]
    x = x * s[:, :, None, None]
    if conv.upsample:
        out = conv.blur(torch.nn.functional.conv_transpose2d(x, weight.transpose(0, 1), stride=2))
    else:
        out = torch.nn.functional.conv2d(x, weight, padding=conv.padding)
    if conv.demodulate:
        demod = torch.rsqrt(s.pow(2) @ weight.pow(2).sum(dim=(2, 3)).t() + 1e-8)
        out = out * demod[..., None, None]
    return out


@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_layers_compute_the_plain_formula_and_its_gradients(channels_last):
    """The styled convolutions' fused tail (sqrt 2 folded in, ``addcmul``) and the to-RGB
    layers' batched matrix product give the plain formula's values and gradients (a tiny
    random network in float64), with given noise and with noise drawn from the same
    random state."""
    net = random_net(3).double()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    g = torch.Generator().manual_seed(1)
    styled, rgb = net.convs[0], net.to_rgbs[0]  # upsampling 3x3 conv, 1x1 to-RGB
    x0 = torch.randn(3, 8, 4, 4, generator=g).double().contiguous(memory_format=layout)
    style0 = torch.randn(3, 8, generator=g).double()
    noise0 = torch.randn(3, 1, 8, 8, generator=g).double()

    def both(fn_fused, fn_plain, *args):
        outs, grads = [], []
        for fn in (fn_fused, fn_plain):
            x, style = x0.clone().requires_grad_(), style0.clone().requires_grad_()
            torch.manual_seed(7)  # the noise drawn when none is given
            out = fn(x, style, *args)
            weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)
            (out * weights).sum().backward()
            outs.append(out.detach())
            grads.append((x.grad, style.grad))
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-10, atol=1e-12)
        for a, b in zip(*grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        return outs[0]

    def plain_styled(x, style, noise=None):
        out = _plain_modulated(styled.conv, x, style)
        if noise is None:
            noise = out.new_empty(out.shape[0], 1, *out.shape[2:]).normal_()
        return styled.activate(out + styled.noise.weight * noise)

    with_noise = both(styled, plain_styled, noise0)
    drawn = both(styled, plain_styled)
    assert (with_noise - drawn).abs().max() > 1e-3  # the noise term is really in both
    h = styled(x0, style0, noise0).detach().contiguous(memory_format=layout)
    x0 = h
    both(lambda x, s: rgb(x, s), lambda x, s: _plain_modulated(rgb.conv, x, s) + rgb.bias)
