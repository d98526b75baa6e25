"""Pieces of the latent search: the sphere, GEOCROSS, the learning-rate schedule, picking starts."""

from __future__ import annotations

import math

import pytest
import torch

from napari_pulse.candidates import Candidates, choose
from napari_pulse.optim import cosine, geocross, project_to_sphere

pytestmark = pytest.mark.usefixtures("one_thread")


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_project_to_sphere_vectors():
    t = _randn(5, 16) * torch.arange(1, 6)[:, None]  # different norms per row
    out = project_to_sphere(t, 1)
    assert out is t  # in place
    torch.testing.assert_close(t.norm(dim=-1), torch.full((5,), 4.0))


def test_project_to_sphere_per_layer():
    t = _randn(3, 4, 9, seed=1) * 7
    directions = torch.nn.functional.normalize(t, dim=-1)
    project_to_sphere(t, 2)
    torch.testing.assert_close(t.norm(dim=-1), torch.full((3, 4), 3.0))
    torch.testing.assert_close(torch.nn.functional.normalize(t, dim=-1), directions)


def test_project_to_sphere_whole_sample():
    t = _randn(2, 4, 9, seed=2)
    project_to_sphere(t, 1)  # one vector of 36 per sample
    torch.testing.assert_close(t.flatten(1).norm(dim=-1), torch.full((2,), 6.0))


def test_project_to_sphere_keeps_leaf_with_grad():
    t = _randn(2, 3, 8).requires_grad_()
    project_to_sphere(t, 2)
    assert t.is_leaf and t.requires_grad
    torch.testing.assert_close(t.detach().norm(dim=-1), torch.full((2, 3), math.sqrt(8)))


def test_geocross_zero_for_identical_layers():
    v = _randn(3, 1, 16)
    z = v.expand(3, 5, 16).clone() * torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0])[None, :, None]
    z.requires_grad_()
    g = geocross(z)
    assert g.shape == (3,)
    assert torch.all(g.abs() < 1e-5)
    g.sum().backward()
    assert torch.isfinite(z.grad).all()


def test_geocross_positive_otherwise_with_finite_gradients():
    z = _randn(4, 5, 16, seed=3)
    z[0, 1] = z[0, 0]  # some identical pairs, some not
    z.requires_grad_()
    g = geocross(z)
    assert torch.all(g > 0.1)
    g.sum().backward()
    assert torch.isfinite(z.grad).all()
    assert z.grad.abs().sum() > 0


def test_geocross_known_value_and_scale_invariance():
    # Two orthogonal layer vectors: the angle is pi/2 whatever their lengths.
    z = torch.tensor([[[1.0, 0.0], [0.0, 5.0]]])
    assert geocross(z).item() == pytest.approx((math.pi / 2) ** 2, rel=1e-5)
    assert geocross(torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])).item() == pytest.approx(
        math.pi**2, rel=1e-4
    )


def test_geocross_single_layer_is_zero():
    g = geocross(_randn(3, 1, 8))
    torch.testing.assert_close(g, torch.zeros(3))


def _cands(mse: torch.Tensor, images: torch.Tensor) -> Candidates:
    u, k = mse.shape
    return Candidates(z=torch.zeros(u, k, 2, 4), noise=[], mse=mse, images=images)


def test_choose_picks_lowest_mse():
    mse = torch.tensor([[0.5, 0.1, 0.3, 0.2], [0.01, 0.04, 0.02, 0.03]])
    images = torch.rand(2, 4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    picks = choose(_cands(mse, images), 2)
    assert picks.tolist() == [[1, 3], [0, 2]]
    assert choose(_cands(mse, images), 1).tolist() == [[1], [0]]
    assert choose(_cands(mse, images), 4).tolist() == [[1, 3, 2, 0], [0, 2, 3, 1]]


def test_choose_prefers_distinct_images():
    mse = torch.tensor([[0.1, 0.2, 0.3]])
    images = torch.stack([torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])[None]
    # Start 1 is the same image as start 0: the next distinct one (2) is preferred.
    assert choose(_cands(mse, images), 2).tolist() == [[0, 2]]


def test_choose_repeats_when_too_few_distinct():
    mse = torch.tensor([[0.3, 0.1]])
    images = torch.zeros(1, 2, 1, 4, 4)
    picks = choose(_cands(mse, images), 2)
    assert picks.shape == (1, 2)
    assert picks[0, 0].item() == 1  # the best comes first


def test_cosine_schedule_falls_from_one_to_zero():
    values = [cosine(s, 10) for s in range(11)]
    assert values[0] == pytest.approx(1) and values[-1] == pytest.approx(0, abs=1e-12)
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert values[5] == pytest.approx(0.5)
