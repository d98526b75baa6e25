"""The intermediate-layer (feature map) search, its ball projections and its place in upscale().

Generators here are the untrained ``tiny`` ones (random smooth textures) and a tiny random
StyleGAN2: enough to check the mechanics, not the quality of real generators.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_pulse import iter_upscale, upscale
from napari_pulse.generators import load
from napari_pulse.generators.base import DomainGenerator, ModelCard
from napari_pulse.generators.stylegan2 import StyleGAN2, StyleGAN2Config, StyleGAN2Generator
from napari_pulse.intermediate import (
    IntermediateConfig,
    check_layers,
    default_layers,
    project_ball,
    relative_size,
)

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = {"steps": 40, "restarts": 4}


def test_l2_ball_projection_scales_only_rows_outside():
    d = torch.tensor([[3.0, 4.0], [0.1, 0.1]])  # rms 3.54 and 0.1
    project_ball(d, 1.0, "l2")
    assert torch.allclose(d[0].pow(2).mean().sqrt(), torch.tensor(1.0))
    assert torch.allclose(d[0, 0] / d[0, 1], torch.tensor(0.75))  # direction kept
    assert torch.equal(d[1], torch.tensor([0.1, 0.1]))


def test_l1_ball_projection_is_the_euclidean_projection():
    rng = torch.Generator().manual_seed(0)
    d = torch.randn(5, 20, generator=rng) * 3
    inside = torch.full((1, 20), 0.01)
    x = torch.cat([d, inside])
    project_ball(x, 0.5, "l1")
    assert torch.allclose(x[:5].abs().mean(1), torch.full((5,), 0.5), atol=1e-5)
    assert torch.equal(x[5:], inside)
    # Optimality: no other point of the ball (random feasible points) is closer to d.
    for row in range(5):
        best = (x[row] - d[row]).norm()
        for _ in range(200):
            y = torch.randn(20, generator=rng)
            y = y / y.abs().mean() * 0.5 * torch.rand((), generator=rng)
            assert (y - d[row]).norm() >= best - 1e-5


def test_relative_size_in_each_norm():
    d = torch.tensor([[2.0, -2.0]])
    assert relative_size(d, 2.0, "l2").item() == pytest.approx(1.0)
    assert relative_size(d, 4.0, "l1").item() == pytest.approx(0.5)


def test_every_generator_exposes_feature_maps_that_offsets_move():
    net = StyleGAN2(StyleGAN2Config(16, 1, 8, 1, widths={4: 8, 8: 8, 16: 4}))
    for g in (load("tiny"), load("tiny-rgb"), StyleGAN2Generator(net, ModelCard(name="s"))):
        z = g.sample_latents(2, torch.Generator().manual_seed(0))
        noise = [torch.randn(2, *s) for s in g.noise_shapes()] or None
        feats: list[torch.Tensor] = []
        plain = g.synthesize(z, noise)
        assert torch.equal(g.synthesize(z, noise, features=feats), plain)
        assert [tuple(f.shape[1:]) for f in feats] == g.feature_shapes()
        assert all(s > 0 for s in g.feature_scales())
        zero = {1: torch.zeros(2, *g.feature_shapes()[1])}
        assert torch.equal(g.synthesize(z, noise, offsets=zero), plain)
        moved = g.synthesize(z, noise, offsets={1: torch.ones(2, *g.feature_shapes()[1])})
        assert (moved - plain).abs().max() > 1e-3


def test_layers_are_checked():
    shapes = [(4, 4, 4)] * 3
    assert check_layers(None, shapes, "g") == default_layers(3) == (1, 2)
    assert check_layers((0,), shapes, "g") == (0,)
    with pytest.raises(ValueError, match="indices in 0..2"):
        check_layers((3,), shapes, "g")
    with pytest.raises(ValueError, match="only mode='latent'"):
        check_layers(None, [], "g")


class NoFeatures(DomainGenerator):
    """A generator that exposes no feature maps (as a third-party one may)."""

    def __init__(self):
        super().__init__()
        self.resolution, self.channels, self.latent_shape = (16, 16), 1, (8,)
        self.card = ModelCard(name="no-features")
        self.lin = torch.nn.Linear(8, 256)

    def synthesize(self, latents, noise=None):
        return torch.tanh(self.lin(latents)).view(-1, 1, 16, 16)


def test_latent_mode_works_with_generators_without_offsets_and_intermediate_refuses_them():
    img = np.random.default_rng(0).random((4, 4)).astype(np.float32)
    r = upscale(img, generator=NoFeatures(), factor=4, **FAST)
    assert r.image.shape == (16, 16) and r.ood_score == 0.0
    with pytest.raises(ValueError, match="exposes no feature maps"):
        upscale(img, generator=NoFeatures(), factor=4, mode="intermediate", **FAST)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"mode": "pixels"}, "Unknown mode"),
        ({"realism": -1}, "realism"),
        ({"mode": "intermediate", "intermediate": IntermediateConfig(layers=(9,))}, "indices"),
    ],
)
def test_bad_mode_settings_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        upscale(np.zeros((8, 8), np.float32), generator="tiny", factor=4, **kw)


def test_intermediate_explains_an_out_of_domain_image_and_scores_it():
    """White noise is far outside the tiny generator's smooth textures."""
    img = np.random.default_rng(0).random((8, 16)).astype(np.float32)
    latent = upscale(img, generator="tiny", factor=4, **FAST)
    icfg = IntermediateConfig(steps=60, radius=0.5)
    inter = upscale(img, generator="tiny", factor=4, mode="intermediate", intermediate=icfg, **FAST)
    assert inter.lr_psnr > latent.lr_psnr + 6
    assert latent.ood_score == 0.0
    assert inter.ood_tiles.shape == inter.lr_psnr_tiles.shape and inter.ood_tiles.size > 1
    assert 0.3 < inter.ood_score <= 1.0 + 1e-6
    p = inter.params
    assert p["mode"] == "intermediate" and p["intermediate"]["layers"] == [1, 2]
    assert p["intermediate"]["radius"] == 0.5
    before = np.array(p["latent_phase_tile_lr_psnr"])  # the latent search's own fit
    assert before.shape == inter.lr_psnr_tiles.shape
    assert np.median(inter.lr_psnr_tiles) > np.median(before) + 6


def test_an_in_domain_image_needs_little_of_the_ball():
    g = load("tiny")
    with torch.no_grad():
        hr = ((g.synthesize(g.sample_latents(1, torch.Generator().manual_seed(3))) + 1) / 2)[0, 0]
    from napari_pulse.degrade import downscale

    lr = downscale(hr.numpy(), 4)
    icfg = IntermediateConfig(steps=60, radius=0.5)
    r = upscale(lr, generator="tiny", factor=4, mode="intermediate", intermediate=icfg, **FAST)
    noise = np.random.default_rng(0).random(lr.shape).astype(np.float32)
    r_noise = upscale(
        noise, generator="tiny", factor=4, mode="intermediate", intermediate=icfg, **FAST
    )
    assert r.success and r.ood_score < r_noise.ood_score


def test_intermediate_samples_tiles_and_progress():
    img = np.random.default_rng(1).random((8, 12)).astype(np.float32)
    icfg = IntermediateConfig(steps=5, layers=(0, 2), norm="l1")
    events = list(
        iter_upscale(
            img,
            generator="tiny",
            factor=4,
            samples=2,
            mode="intermediate",
            intermediate=icfg,
            **FAST,
        )
    )
    result = events[-1].result
    assert result.samples.shape == (2, 32, 48) and result.std.shape == (32, 48)
    phases = [e.stage for e in events[:-1]]
    assert phases.index("search") < phases.index("features") < phases.index("blend")
    done = [e.done for e in events[:-1]]
    assert done == sorted(done) and done[-1] <= events[-2].total


def test_realism_pulls_offsets_toward_the_prior():
    img = np.random.default_rng(2).random((4, 4)).astype(np.float32)
    icfg = IntermediateConfig(steps=40, radius=1.0, settle=0.0)
    free = upscale(img, generator="tiny", factor=4, mode="intermediate", intermediate=icfg, **FAST)
    pulled = upscale(
        img,
        generator="tiny",
        factor=4,
        mode="intermediate",
        intermediate=icfg,
        realism=10.0,
        **FAST,
    )
    assert pulled.ood_score < free.ood_score
    assert pulled.params["intermediate"]["realism"] == 10.0
