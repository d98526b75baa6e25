"""The generator registry and the bundled generators."""

from __future__ import annotations

import pytest
import torch

from napari_pulse.generators import DomainGenerator, available, dcgan, load, registry
from napari_pulse.generators.tiny import TinyGenerator


def test_available_lists_bundled_without_loading(monkeypatch):
    def boom():
        raise AssertionError("listing must not load weights")

    monkeypatch.setattr(registry, "load_faces_dcgan", boom)
    names = [info.name for info in available()]
    assert {"faces-dcgan64", "tiny", "tiny-rgb"} <= set(names)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="Unknown generator 'nope'.*tiny"):
        load("nope")


def test_missing_face_weights_say_how_to_install(monkeypatch):
    monkeypatch.setattr(dcgan.importlib.util, "find_spec", lambda name: None)
    info = {i.name: i for i in available()}["faces-dcgan64"]
    assert not info.ok and "pip install --no-deps gan-face-generate" in info.reason
    monkeypatch.setattr(registry, "_loaded", {})
    with pytest.raises(FileNotFoundError, match="pip install --no-deps gan-face-generate"):
        load("faces-dcgan64")


def test_tiny_is_deterministic_and_in_range():
    a, b = TinyGenerator(seed=3), TinyGenerator(seed=3)
    z = a.sample_latents(4, torch.Generator().manual_seed(0))
    x = a.synthesize(z)
    assert x.shape == (4, 1, 32, 32)
    assert torch.equal(x, b.synthesize(z))
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.1  # uses the range, not flat
    assert not torch.equal(x, TinyGenerator(seed=4).synthesize(z))


def test_load_returns_the_same_frozen_model():
    g = load("tiny")
    assert isinstance(g, DomainGenerator) and g is load("tiny")
    assert not any(p.requires_grad for p in g.parameters())


@pytest.mark.skipif(dcgan.faces_weights_path() is None, reason="gan-face-generate not installed")
def test_face_dcgan_loads_and_makes_faces():
    g = load("faces-dcgan64")
    assert g.resolution == (64, 64) and g.channels == 3 and g.latent_shape == (100,)
    assert not g.training  # batch norm frozen
    with torch.no_grad():
        x = g.synthesize(g.sample_latents(2, torch.Generator().manual_seed(0)))
    assert x.shape == (2, 3, 64, 64) and x.min() >= -1 and x.max() <= 1
    assert x.std() > 0.2
