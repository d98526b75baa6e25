"""Bad and unusual inputs to the API: a clear error or a finite result, the caller's data
unchanged, and no call that breaks the next one. Tiny random generators throughout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import napari_pulse
from napari_pulse.events import Cancelled
from napari_pulse.generators import load

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = dict(generator="tiny", factor=2, steps=2, restarts=2)


def _image(seed: int = 0, shape=(8, 8)) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


def _upscale_unchanged(image, **kw):
    """upscale(image, **kw), checking that the caller's array is left as it was."""
    before = image.copy()
    try:
        return napari_pulse.upscale(image, **{**FAST, **kw})
    finally:
        np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(degradation="psf", sigma=float("inf")), "sigma > 0"),
        (dict(degradation="psf", sigma=float("nan")), "sigma > 0"),
        (dict(degradation="psf", sigma="2"), "sigma > 0"),
        (dict(degradation="psf", sigma=-1.0), "sigma > 0"),
        (dict(degradation="psf", sigma=1e9), "at most 16 at factor 2"),
        (dict(degradation="psf", sigma=True), "sigma > 0"),
        (dict(sigma=1.5), "psf degradation only"),
        (dict(seed=2**70), "from 0 to 2\\*\\*63 - 1"),
        (dict(seed=2**63), "from 0 to 2\\*\\*63 - 1"),
        (dict(seed=-1), "from 0 to 2\\*\\*63 - 1"),
    ],
)
def test_bad_sigma_and_seed_are_value_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        _upscale_unchanged(_image(), **kw)


def test_seeds_across_the_range_give_distinct_results():
    img = _image()
    images = [_upscale_unchanged(img, seed=s).image for s in (0, 1, 2**62, 2**63 - 1)]
    for i in range(len(images)):
        for j in range(i):
            assert not np.array_equal(images[i], images[j])
    np.testing.assert_array_equal(images[-1], _upscale_unchanged(img, seed=2**63 - 1).image)


@pytest.mark.parametrize(
    "image",
    [
        np.full((2, 2), 1e16),
        np.full((4, 4), 1e308),
        np.full((4, 4), -1e308),
        np.array([[1e308, -1e308], [0.0, 1.0]]),
        np.array([[np.finfo(np.float64).max, np.finfo(np.float64).min], [0.0, 5e-324]]),
        np.full((3, 3), 5e-324),
        np.full((3, 3), 65504.0, dtype=np.float16),
        np.array([[1e38, -1e38], [3.0, 1.0]], dtype=np.float32),
        np.full((4, 4), np.finfo(np.float32).max, dtype=np.float32),
        np.full((4, 4), np.finfo(np.float32).min, dtype=np.float32),
    ],
    ids=[
        "1e16-flat",
        "1e308-flat",
        "-1e308-flat",
        "+-1e308",
        "float64-extremes",
        "subnormal",
        "float16-max",
        "float32-1e38",
        "float32-max-flat",  # its flat span reaches past float32's top
        "float32-min-flat",
    ],
)
@pytest.mark.parametrize("normalization", ["auto", "percentile", "range", "minmax"])
def test_huge_tiny_and_constant_floats_give_finite_results(image, normalization):
    r = _upscale_unchanged(image, normalization=normalization, samples=2)
    assert r.image.dtype == image.dtype and r.image.shape == tuple(2 * s for s in image.shape)
    assert np.isfinite(r.image).all() and np.isfinite(r.std).all() and np.isfinite(r.mean).all()
    assert math.isfinite(r.lr_psnr)
    lo, hi = float(image.min()), float(image.max())
    if lo == hi:  # a flat image comes back flat, at its own value
        np.testing.assert_allclose(r.image.astype(np.float64), lo, rtol=1e-3, atol=0.01)


def test_a_trailing_channel_axis_of_one_is_grayscale():
    img = _image(shape=(8, 8, 1))
    r = _upscale_unchanged(img)
    flat = _upscale_unchanged(img[..., 0])
    assert r.image.shape == (16, 16, 1)
    np.testing.assert_array_equal(r.image[..., 0], flat.image)
    stack = _upscale_unchanged(np.stack([img, img]))
    assert stack.image.shape == (2, 16, 16, 1)


def test_a_failed_or_cancelled_call_leaves_the_shared_generator_as_it_was():
    gen = load("tiny")
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    with pytest.raises(ValueError, match="does not run on device 'meta'"):
        _upscale_unchanged(_image(), device="meta")
    with pytest.raises(Cancelled):
        napari_pulse.upscale(_image(), cancel=lambda: True, **FAST)
    after = gen.state_dict()
    assert all(torch.equal(before[k], after[k]) and after[k].device.type == "cpu" for k in before)
    assert not any(p.requires_grad for p in gen.parameters())
    assert _upscale_unchanged(_image()).success in (True, False)  # the next call works


def test_a_generator_on_another_device_is_copied_never_moved():
    from napari_pulse.options import on_device

    gen = load("tiny")
    assert on_device(gen, torch.device("cpu")) is gen
    there = on_device(gen, torch.device("meta"))  # a device type the search refuses to run
    assert there is not gen and next(there.parameters()).device.type == "meta"
    assert next(gen.parameters()).device.type == "cpu"
    assert on_device(gen, torch.device("meta")) is there  # one copy per device
    cached = torch.nn.Linear(3, 2)  # any module, such as a cached encoder
    moved = on_device(cached, torch.device("meta"))
    assert moved is not cached and cached.weight.device.type == "cpu"


# -- property test ------------------------------------------------------------------------

DTYPES = [np.uint8, np.uint16, np.int16, np.float16, np.float32, np.float64]


@st.composite
def images(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(
        st.sampled_from(
            [
                (1, 1),
                (2, 2),
                (3, 5),
                (8, 8),
                (1, 8),
                (8, 1),
                (2, 3, 4),
                (4, 4, 1),
                (4, 4, 3),
                (0, 4),
                (6, 6, 4),
            ]
        )  # fmt: skip
    )
    kind = draw(st.sampled_from(["random", "constant", "huge", "tiny", "nan", "inf"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=shape, endpoint=True)
        if kind == "constant":
            values = np.full(shape, draw(st.integers(int(info.min), int(info.max))))
        return values.astype(dtype)
    top = float(np.finfo(dtype).max)
    scale = {"huge": top / 2, "tiny": float(np.finfo(dtype).tiny)}.get(kind, 1.0)
    values = np.clip(rng.standard_normal(shape) * scale, -top, top).astype(dtype)
    if kind == "constant":
        values = np.full(
            shape, draw(st.floats(-top, top, width=32 if dtype != np.float64 else 64)), dtype
        )
    if kind in ("nan", "inf") and values.size:
        values.flat[0] = np.nan if kind == "nan" else np.inf
    return values


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=images(), factor=st.sampled_from([2, 3, 4]))
def test_every_input_gives_a_finite_result_or_a_clear_error(image, factor):
    before = image.copy()
    try:
        r = napari_pulse.upscale(image, generator="tiny", factor=factor, steps=1, restarts=1)
    except (ValueError, TypeError) as exc:
        assert str(exc)  # a message for the user
    else:
        assert r.image.dtype == image.dtype
        rgb = image.ndim >= 3 and image.shape[-1] == 3
        spatial = image.ndim - (1 if rgb or (image.ndim >= 3 and image.shape[-1] == 1) else 0)
        expected = tuple(
            s * factor if spatial - 2 <= i < spatial else s for i, s in enumerate(image.shape)
        )
        assert r.image.shape == expected
        assert np.isfinite(r.image.astype(np.float64)).all()
    np.testing.assert_array_equal(image, before)
    ok = napari_pulse.upscale(_image(), **FAST)  # and a normal call still works
    assert ok.image.shape == (16, 16)


def test_a_call_cancelled_while_building_a_bank_leaves_no_partial_bank():
    from napari_pulse import bank, pipeline
    from napari_pulse.options import Options
    from napari_pulse.search import SearchConfig

    kw = dict(FAST, seed=5, config=SearchConfig(bank=300))
    _, job = pipeline.prepare(_image(), False, Options(**kw).resolve(rgb=False))
    key = bank.key_for(job.render, job.degrade, 300, 5)
    bank.CACHE.clear()
    bank.CACHE.path(key).unlink(missing_ok=True)
    stages: list[str] = []
    with pytest.raises(Cancelled):
        napari_pulse.upscale(_image(), progress=lambda e: stages.append(e.stage),
                             cancel=lambda: stages[-1:] == ["bank"], **kw)  # fmt: skip
    assert stages == ["bank"]
    assert bank.CACHE.get(key) is None and not bank.CACHE.path(key).exists()
    after_cancel = _upscale_unchanged(_image(), **kw)
    bank.CACHE.clear()
    bank.CACHE.path(key).unlink()
    np.testing.assert_array_equal(after_cancel.image, _upscale_unchanged(_image(), **kw).image)
