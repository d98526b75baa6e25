"""The downscaling operators: agreement with torch, exactness, errors, differentiability."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_pulse.degrade import DEGRADATIONS, Degradation, downscale, kernel_1d

pytestmark = pytest.mark.usefixtures("one_thread")


def _rand(*shape: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_bicubic_matches_torch_antialias_in_the_interior(factor):
    # Non-square, multi-channel, batch of 2: (N, C, H, W) with H != W.
    x = _rand(2, 3, factor * 14, factor * 11, seed=factor)
    ours = Degradation("bicubic", factor)(x)
    ref = F.interpolate(
        x, scale_factor=1 / factor, mode="bicubic", antialias=True, align_corners=False
    )
    assert ours.shape == ref.shape == (2, 3, 14, 11)
    # Borders differ on purpose (reflect padding vs torch's truncated kernel).
    m = math.ceil(Degradation("bicubic", factor).margin / factor) + 1
    torch.testing.assert_close(ours[..., m:-m, m:-m], ref[..., m:-m, m:-m], atol=1e-5, rtol=1e-5)
    # ... and the borders are indeed where the two differ, so the crop above matters.
    assert (ours - ref).abs().max() > 1e-4


@pytest.mark.parametrize("factor", [2, 3, 5])
def test_area_is_avg_pool(factor):
    x = _rand(2, 2, factor * 6, factor * 9, seed=1)
    torch.testing.assert_close(Degradation("area", factor)(x), F.avg_pool2d(x, factor))


@pytest.mark.parametrize("factor,sigma", [(2, 0.5), (3, 1.3), (4, 2.0), (8, 4.5)])
def test_psf_kernel_is_normalised_and_symmetric(factor, sigma):
    taps = kernel_1d("psf", factor, sigma)
    assert taps.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(taps > 0)
    np.testing.assert_allclose(taps, taps[::-1])
    # Wide enough for a Gaussian: at least +-3 sigma around the footprint.
    assert len(taps) >= 6 * sigma


@pytest.mark.parametrize("kind", ["bicubic", "area"])
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_other_kernels_sum_to_one(kind, factor):
    assert kernel_1d(kind, factor).sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("sigma", [None, 0, 0.0, -1.0, float("nan")])
def test_psf_needs_positive_sigma(sigma):
    with pytest.raises(ValueError, match="sigma > 0"):
        Degradation("psf", 4, sigma)


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="Unknown degradation 'lanczos'"):
        Degradation("lanczos", 2)


@pytest.mark.parametrize("factor", [2.5, 2.0, True, False, "2", 0, -2])
def test_bad_factor_raises(factor):
    with pytest.raises(ValueError, match="factor must be an integer"):
        Degradation("bicubic", factor)


def test_numpy_integer_factor_is_accepted():
    assert Degradation("area", np.int64(2))(_rand(1, 1, 4, 6)).shape == (1, 1, 2, 3)


@pytest.mark.parametrize("kind,sigma", [("bicubic", None), ("area", None), ("psf", 1.5)])
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_output_shape(kind, sigma, factor):
    x = _rand(3, 2, factor * 5, factor * 7)
    assert Degradation(kind, factor, sigma)(x).shape == (3, 2, 5, 7)


def test_size_not_a_multiple_raises():
    with pytest.raises(ValueError, match="not a multiple of the factor 4"):
        Degradation("bicubic", 4)(_rand(1, 1, 16, 18))


@pytest.mark.parametrize("kind,sigma", [("bicubic", None), ("area", None), ("psf", 1.5)])
def test_differentiable(kind, sigma):
    op = Degradation(kind, 4, sigma)
    x = _rand(1, 2, 24, 16, dtype=torch.float64).requires_grad_()
    w = _rand(1, 2, 6, 4, seed=1, dtype=torch.float64)
    (op(x) * w).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    # The operator is linear, so the gradient of <D x, w> is the adjoint D^T w:
    # <D v, w> == <D^T w, v> for any v (a cheap exact check instead of gradcheck).
    v = _rand(1, 2, 24, 16, seed=2, dtype=torch.float64)
    with torch.no_grad():
        lhs = (op(v) * w).sum()
    torch.testing.assert_close(lhs, (x.grad * v).sum())


@pytest.mark.parametrize("kind,sigma", [("bicubic", None), ("area", None), ("psf", 2.0)])
@pytest.mark.parametrize("factor", [2, 3, 8])
def test_constant_stays_constant(kind, sigma, factor):
    x = torch.full((1, 3, factor * 4, factor * 3), 0.37)
    y = Degradation(kind, factor, sigma)(x)
    torch.testing.assert_close(y, torch.full_like(y, 0.37), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_tiny_images_do_not_crash(kind):
    # The padding is wider than the image here (replicate instead of reflect).
    y = Degradation(kind, 8, 3.0 if kind == "psf" else None)(_rand(1, 1, 8, 16))
    assert y.shape == (1, 1, 1, 2)
    assert torch.isfinite(y).all()


def test_downscale_numpy_gray_and_rgb():
    rng = np.random.default_rng(0)
    gray = rng.random((26, 33)).astype(np.float32)  # not multiples of 4: cropped first
    out = downscale(gray, 4)
    assert isinstance(out, np.ndarray)
    assert out.shape == (6, 8)
    ref = Degradation("bicubic", 4)(torch.from_numpy(gray[:24, :32])[None, None])[0, 0].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-6)

    rgb = rng.random((24, 16, 3))  # float64 in, float32 out
    out = downscale(rgb, 4, kind="psf", sigma=1.5)
    assert out.shape == (6, 4, 3)
    assert out.dtype == np.float32
    for ch in range(3):  # channels are downscaled independently, in place
        np.testing.assert_allclose(out[..., ch], downscale(rgb[..., ch], 4, "psf", 1.5), atol=1e-6)
    assert not np.allclose(out[..., 0], out[..., 1])
