"""Intensity normalisation to [0, 1] and back, and casting to the input's dtype."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pulse.intensity import PERCENTILES, Intensity, cast_like, fit_intensity


def test_percentile_mode():
    a = np.arange(1001, dtype=np.float32)  # 0..1000: percentile p is at value 10 * p
    it = fit_intensity(a, "percentile")
    assert it.mode == "percentile"
    assert it.lo == pytest.approx(10 * PERCENTILES[0])
    assert it.hi == pytest.approx(10 * PERCENTILES[1])
    unit = it.to_unit(a)
    assert unit[10] == pytest.approx(0.0, abs=1e-6)
    assert unit[998] == pytest.approx(1.0, abs=1e-6)
    assert unit.min() < 0 and unit.max() > 1  # outliers are not clipped here


def test_percentile_ignores_outliers():
    a = np.full((50, 50), 100, np.uint16)
    a[:25] = 200
    a[0, 0] = 65000  # one hot pixel
    it = fit_intensity(a, "percentile")
    assert it.lo == pytest.approx(100)
    assert it.hi == pytest.approx(200)


@pytest.mark.parametrize(
    "dtype,lo,hi", [(np.uint8, 0, 255), (np.uint16, 0, 65535), (np.int16, 0, 32767)]
)
def test_range_mode_integers_use_dtype_range(dtype, lo, hi):
    a = np.array([[3, 7], [9, 12]], dtype=dtype)
    it = fit_intensity(a, "range")
    assert (it.mode, it.lo, it.hi) == ("range", lo, hi)


def test_range_mode_floats():
    inside = np.array([[0.2, 0.5], [0.25, 0.9]], np.float32)
    assert (fit_intensity(inside, "range").lo, fit_intensity(inside, "range").hi) == (0.0, 1.0)
    outside = np.array([[-2.0, 5.0], [1.0, 3.0]])
    it = fit_intensity(outside, "range")
    assert (it.lo, it.hi) == (-2.0, 5.0)


def test_minmax_mode():
    a = np.array([[10, 20], [30, 50]], np.uint8)
    it = fit_intensity(a, "minmax")
    assert (it.mode, it.lo, it.hi) == ("minmax", 10.0, 50.0)
    np.testing.assert_allclose(it.to_unit(a), [[0.0, 0.25], [0.5, 1.0]])


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match="Unknown normalization 'zscore'"):
        fit_intensity(np.zeros((2, 2)), "zscore")


@pytest.mark.parametrize("mode", ["percentile", "range", "minmax"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
def test_round_trip(mode, dtype):
    rng = np.random.default_rng(0)
    a = (rng.random((16, 12)) * 200).astype(dtype)
    it = fit_intensity(a, mode)
    unit = it.to_unit(a)
    assert unit.dtype == np.float32
    assert unit.shape == a.shape
    back = it.from_unit(unit)
    np.testing.assert_allclose(back, a.astype(np.float64), rtol=1e-5, atol=1e-4 * (it.hi - it.lo))
    if np.issubdtype(dtype, np.integer):
        np.testing.assert_array_equal(cast_like(back, dtype), a)


def test_as_dict():
    assert Intensity("minmax", 1.0, 3.0).as_dict() == {"mode": "minmax", "lo": 1.0, "hi": 3.0}


@pytest.mark.parametrize("mode", ["percentile", "range", "minmax"])
@pytest.mark.parametrize("value", [0, 7, 255])
def test_flat_image_does_not_divide_by_zero(mode, value):
    a = np.full((6, 5), value, np.uint8)
    it = fit_intensity(a, mode)
    assert it.hi > it.lo
    with np.errstate(all="raise"):
        unit = it.to_unit(a)
    assert np.isfinite(unit).all()
    np.testing.assert_array_equal(cast_like(it.from_unit(unit), np.uint8), a)


def test_flat_float_image():
    a = np.full((4, 4), 3.5, np.float32)
    for mode in ("percentile", "range", "minmax"):
        unit = fit_intensity(a, mode).to_unit(a)
        assert np.isfinite(unit).all()


def test_cast_like_rounds_and_clips_integers():
    values = np.array([-3.2, 0.4, 0.6, 1.5, 254.6, 300.0])
    out = cast_like(values, np.uint8)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [0, 0, 1, 2, 255, 255])
    out = cast_like(np.array([-40000.0, -1.6, 40000.0]), np.int16)
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, [-32768, -2, 32767])
    out = cast_like(np.array([70000.7, 12.49]), np.uint16)
    np.testing.assert_array_equal(out, [65535, 12])


def test_cast_like_floats_keep_values():
    values = np.array([-3.25, 0.4, 300.5])
    out = cast_like(values, np.float32)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, values)
    assert cast_like(values, np.dtype("float64")).dtype == np.float64
