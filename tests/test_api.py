"""The public entry point ``upscale`` / ``iter_upscale``.

Every search here runs on the ``tiny`` / ``tiny-rgb`` generators (untrained, random, 32x32,
meant for tests) with a handful of steps and restarts, on the CPU, so that each call takes
a fraction of a second. They check shapes, dtypes, bookkeeping, errors and events, not
image quality (except the self-consistency test, which uses ~150 steps).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import napari_pulse
from napari_pulse import Cancelled, Finished, Progress, iter_upscale, upscale
from napari_pulse.degrade import downscale
from napari_pulse.generators import load
from napari_pulse.search import SearchConfig

pytestmark = pytest.mark.usefixtures("one_thread")


FAST = {"generator": "tiny", "factor": 4, "steps": 4, "restarts": 2, "device": "cpu"}


def _run(image, **kw):
    return upscale(image, **{**FAST, **kw})


def _img(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    return rng.random(shape).astype(dtype)


@pytest.mark.parametrize(
    "shape,dtype,generator",
    [
        ((6, 7), np.uint8, "tiny"),
        ((7, 5), np.uint16, "tiny"),
        ((5, 8), np.float32, "tiny"),
        ((6, 7, 3), np.uint8, "tiny-rgb"),
    ],
)
def test_shape_and_dtype(shape, dtype, generator):
    a = _img(shape, dtype)
    r = _run(a, generator=generator)
    expected = (shape[0] * 4, shape[1] * 4, *shape[2:])
    assert r.image.shape == expected
    assert r.image.dtype == dtype
    assert r.samples is None and r.std is None
    assert np.isfinite(r.lr_psnr) and r.lr_psnr > 0
    assert r.lr_psnr == pytest.approx(10 * math.log10(1 / r.lr_mse))
    assert r.success == (r.lr_mse <= 2e-3)
    assert r.lr_psnr_tiles.shape == (1, 1)
    assert r.params["factor"] == 4
    assert r.params["channel_conversion"] == "none"
    assert r.params["rgb"] == (len(shape) == 3)
    np.testing.assert_array_equal(r.mean, r.image.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_input_not_changed_nor_written(dtype):
    a = _img((6, 6), dtype)
    copy = a.copy()
    a.setflags(write=False)  # any write into the caller's array would raise
    r = _run(a)
    np.testing.assert_array_equal(a, copy)
    assert not np.shares_memory(r.image, a)


def test_deterministic_for_a_seed():
    a = _img((6, 6), np.uint8, seed=3)
    first = _run(a, seed=5)
    again = _run(a, seed=5)
    other = _run(a, seed=6)
    np.testing.assert_array_equal(first.image, again.image)
    assert first.lr_psnr == again.lr_psnr
    assert not np.array_equal(first.image, other.image)


def test_samples_and_std():
    a = _img((6, 7), np.uint8)
    r = _run(a, samples=3, restarts=3)
    assert r.samples.shape == (3, 24, 28)
    assert r.samples.dtype == np.uint8
    assert r.std.shape == (24, 28)
    np.testing.assert_array_equal(r.samples[0], r.image)
    want = np.sqrt(_window_mean(r.samples.astype(np.float64).var(axis=0), 0.5 * 4))
    np.testing.assert_allclose(r.std, want, rtol=1e-5)
    assert r.std.max() > 0  # distinct starts give distinct samples
    assert len(r.sample_lr_psnr) == 3
    assert r.sample_lr_psnr[0] == pytest.approx(r.lr_psnr)
    assert r.mean.shape == (24, 28)


def _window_mean(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted mean of a 2-d ``x`` over the pixels inside it, pixel by pixel."""
    ys, xs = np.mgrid[: x.shape[0], : x.shape[1]]
    out = np.empty_like(x)
    r = int(np.ceil(3 * sigma))
    for y in range(x.shape[0]):
        for c in range(x.shape[1]):
            d2 = (ys - y) ** 2 + (xs - c) ** 2
            w = np.exp(-0.5 * d2 / sigma**2) * ((abs(ys - y) <= r) & (abs(xs - c) <= r))
            out[y, c] = (w * x).sum() / w.sum()
    return out


def test_the_spread_is_local_to_each_plane_and_channel():
    from napari_pulse.layout import Layout
    from napari_pulse.result import _spread

    rng = np.random.default_rng(0)
    samples = np.zeros((3, 2, 12, 10, 3), np.float32)  # (N, T, Y, X, RGB)
    samples[:, 1, 5, 4, 2] = [0.0, 3.0, 6.0]  # the samples disagree at one pixel of one plane
    layout = Layout(lead=(2,), rgb=True, split_channels=False)
    std = _spread(samples, layout, factor=2)
    assert std.shape == (2, 12, 10, 3) and std.dtype == np.float32
    assert std[0].max() == 0 and std[1, ..., :2].max() == 0  # other planes and channels
    spot = std[1, ..., 2]
    assert np.unravel_index(spot.argmax(), spot.shape) == (5, 4)
    assert spot[5, 4] > spot[5, 5] > spot[5, 6] > 0 == spot[5, 8]  # 3 sigma: nothing
    want = np.sqrt(_window_mean(samples[:, 1, ..., 2].astype(np.float64).var(axis=0), 1.0))
    np.testing.assert_allclose(spot, want, rtol=1e-5)
    flat = rng.random((4, 9, 9)).astype(np.float64)
    same = _spread(np.repeat(flat[:1], 4, axis=0), Layout((), False, False), factor=4)
    assert same.dtype == np.float64 and same.max() == 0  # identical samples: no spread


def test_samples_of_rgb_image():
    r = _run(_img((5, 6, 3), np.uint8), generator="tiny-rgb", samples=2, restarts=2)
    assert r.samples.shape == (2, 20, 24, 3)
    assert r.std.shape == (20, 24, 3)


def test_stack_keeps_leading_axis():
    a = _img((3, 6, 7), np.uint16)
    r = _run(a)
    assert r.image.shape == (3, 24, 28)
    assert r.image.dtype == np.uint16
    assert r.lr_psnr_tiles.shape == (3, 1, 1)
    assert np.isfinite(r.lr_psnr_tiles).all()
    # Planes are upscaled on their own: different planes give different results.
    assert not np.array_equal(r.image[0], r.image[1])


def test_gray_image_on_rgb_generator():
    r = _run(_img((6, 6), np.uint8), generator="tiny-rgb")
    assert r.image.shape == (24, 24)
    assert "luminance" in r.params["channel_conversion"]


def test_rgb_image_on_gray_generator():
    a = _img((6, 5, 3), np.uint8)
    r = _run(a, generator="tiny")
    assert r.image.shape == (24, 20, 3)
    assert r.image.dtype == np.uint8
    assert "each channel" in r.params["channel_conversion"]
    assert r.lr_psnr_tiles.shape == (1, 1)
    assert not np.array_equal(r.image[..., 0], r.image[..., 1])


def test_rgb_stack_on_gray_generator():
    r = _run(_img((2, 5, 5, 3), np.uint8), generator="tiny")
    assert r.image.shape == (2, 20, 20, 3)
    assert r.lr_psnr_tiles.shape == (2, 1, 1)


def test_params_record_the_generator_asked_for():
    r = _run(_img((4, 4), np.uint8), generator="tiny-rgb", steps=1, restarts=1)
    assert r.params["generator"] == "tiny-rgb"


def test_tiled_image_reports_per_tile_psnr():
    # The tiny generator is 32 px: at factor 4 its low-res tile is 8x8, so 18x28 needs tiles
    # (over a border of 1 px, 20x30: 3 rows and 5 columns that overlap by 2 px or more).
    a = _img((18, 28), np.uint8, seed=1)
    r = _run(a)
    assert r.image.shape == (72, 112)
    assert r.params["tiles"]["grid"] == [3, 5]
    assert r.params["tiles"]["border"] == [1, 1]
    assert r.params["tiles"]["tile"] == [8, 8]
    assert r.params["blend_steps"] == 1  # 3/16 of the steps, at least 1
    assert r.lr_psnr_tiles.shape == (3, 5)
    assert r.success_tiles.shape == (3, 5)
    assert np.isfinite(r.lr_psnr_tiles).all()
    assert np.unique(r.lr_psnr_tiles).size > 1  # really one figure per tile
    # The reported figure is what the user gets: the output downscaled against the input.
    lr = downscale(r.image.astype(np.float32) / 255, 4)
    mse = float(np.mean((lr - a / 255) ** 2))
    assert r.lr_mse == pytest.approx(mse, rel=1e-3)
    # The tile PSNRs are consistent with the overall one (it lies within their range).
    assert r.lr_psnr_tiles.min() - 1e-6 <= r.lr_psnr <= r.lr_psnr_tiles.max() + 1e-6


def _flat(shape, value=0.5):
    return np.full(shape, value, np.float32)


def _with(value, where=(1, 1)):
    a = _flat((6, 6))
    a[where] = value
    return a


ERRORS = [
    ("empty", np.zeros((0, 0), np.float32), {}, ValueError, "too small"),
    ("empty-rows", np.zeros((0, 6), np.uint8), {}, ValueError, "too small"),
    ("one-pixel", np.ones((1, 1), np.float32), {}, ValueError, "too small"),
    ("one-row", np.ones((1, 9), np.float32), {}, ValueError, "too small"),
    ("nan", _with(np.nan), {}, ValueError, "NaN or infinite"),
    ("inf", _with(np.inf), {}, ValueError, "NaN or infinite"),
    ("-inf", _with(-np.inf), {}, ValueError, "NaN or infinite"),
    ("factor-1", _flat((6, 6)), {"factor": 1}, ValueError, "at least 2"),
    ("factor-0", _flat((6, 6)), {"factor": 0}, ValueError, "at least 2"),
    ("factor-2.5", _flat((6, 6)), {"factor": 2.5}, TypeError, "must be an integer"),
    ("factor-2.0", _flat((6, 6)), {"factor": 2.0}, TypeError, "must be an integer"),
    ("factor-True", _flat((6, 6)), {"factor": True}, TypeError, "must be an integer"),
    ("factor-32", _flat((6, 6)), {"factor": 32}, ValueError, "too large.*largest factor.* 16"),
    ("factor-17", _flat((6, 6)), {"factor": 17}, ValueError, "too large"),
    (
        "generator",
        _flat((6, 6)),
        {"generator": "no-such-gen"},
        ValueError,
        "Unknown generator 'no-such-gen'.*tiny",
    ),
    ("bool", np.zeros((6, 6), bool), {}, TypeError, "boolean mask"),
    ("int64", np.zeros((6, 6), np.int64), {}, TypeError, "int64.*label"),
    ("1-D", np.zeros(16, np.float32), {}, ValueError, "at least 2 dimensions"),
    ("RGBA", np.zeros((6, 6, 4), np.uint8), {}, ValueError, "RGBA"),
    (
        "degradation",
        _flat((6, 6)),
        {"degradation": "nearest"},
        ValueError,
        "Unknown degradation 'nearest'",
    ),
    ("psf-no-sigma", _flat((6, 6)), {"degradation": "psf"}, ValueError, "sigma > 0"),
    (
        "samples",
        _flat((6, 6)),
        {"samples": 3, "restarts": 2},
        ValueError,
        r"samples \(3\) cannot exceed restarts \(2\)",
    ),
    (
        "normalization",
        _flat((6, 6)),
        {"normalization": "zscore"},
        ValueError,
        "Unknown normalization",
    ),
    ("steps", _flat((6, 6)), {"steps": 0}, ValueError, "steps must be an integer >= 1"),
]


@pytest.mark.parametrize("image,kw,exc,match", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_clear_errors(image, kw, exc, match):
    progress = []
    with pytest.raises(exc, match=match):
        _run(image, progress=progress.append, **kw)
    assert progress == []  # rejected before any search step


def test_psf_with_sigma_works():
    r = _run(_img((6, 6), np.uint8), degradation="psf", sigma=1.5)
    assert r.params["degradation"] == "psf"
    assert r.params["sigma"] == 1.5


def test_negative_overlap_is_rejected():
    with pytest.raises(ValueError, match="overlap"):
        _run(_img((20, 28), np.uint8), overlap=-3, steps=1, restarts=1)


def test_progress_events():
    a = _img((12, 12), np.uint8)  # 2x2 tiles: both the search and the blend run
    events: list[Progress] = []
    r = _run(a, steps=8, restarts=2, progress=events.append)
    assert r.image.shape == (48, 48)
    assert events and all(isinstance(e, Progress) for e in events)
    totals = {e.total for e in events}
    assert len(totals) == 1
    total = totals.pop()
    done = [e.done for e in events]
    assert all(a < b for a, b in zip(done, done[1:], strict=False))
    assert done[0] == 0 and done[-1] <= total  # a start event, then one per step
    assert {e.stage for e in events} == {"search", "blend"}
    stages = [e.stage for e in events]
    first_blend = stages.index("blend")  # every search step comes before the blend
    assert set(stages[:first_blend]) == {"search"} and set(stages[first_blend:]) == {"blend"}
    assert all(0 <= e.fraction <= 1 for e in events) and events[-1].fraction > 0
    assert all(1 <= e.batch <= e.batches for e in events)
    assert all(isinstance(e.describe(), str) for e in events)


def test_cancel_after_first_step():
    a = _img((6, 6), np.uint8)
    copy = a.copy()
    events, polls = [], []

    def cancel():
        polls.append(1)
        return True

    with pytest.raises(Cancelled):
        _run(a, steps=50, progress=events.append, cancel=cancel)
    assert len(events) == 1 and events[0].done == 0  # cancelled before any step
    assert len(polls) == 1
    np.testing.assert_array_equal(a, copy)
    assert issubclass(napari_pulse.Cancelled, Exception)


def test_iter_upscale_events_end_with_finished():
    events = list(iter_upscale(_img((6, 6), np.uint8), **FAST))
    assert all(isinstance(e, Progress) for e in events[:-1])
    assert len(events) - 2 == FAST["steps"]  # start event + one per step + Finished
    assert isinstance(events[-1], Finished)
    assert events[-1].result.image.shape == (24, 24)


def test_iter_upscale_close_early():
    a = _img((6, 6), np.uint8)
    copy = a.copy()
    stream = iter_upscale(a, **{**FAST, "steps": 100})
    first = next(stream)
    assert isinstance(first, Progress) and first.done == 0
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)
    np.testing.assert_array_equal(a, copy)
    # Nothing is left in a bad state: a later upscale runs normally.
    assert _run(a).image.shape == (24, 24)


def test_self_consistency_recovers_a_generator_image():
    # A low-res image that the tiny generator can explain exactly: its own output, downscaled.
    gen = load("tiny")
    z = gen.sample_latents(1, torch.Generator().manual_seed(7))  # not the search's seed
    with torch.no_grad():
        hr = ((gen.synthesize(z) + 1) / 2)[0, 0].numpy()
    # Bicubic overshoot can leave values a hair outside [0, 1]; clip so that "range"
    # keeps the identity map [0, 1] -> [0, 1] the generator was sampled in.
    lr = np.clip(downscale(hr, 4), 0, 1)
    r = upscale(
        lr,
        generator="tiny",
        factor=4,
        steps=150,
        restarts=4,
        seed=0,
        normalization="range",
        device="cpu",
    )
    assert r.params["normalization"] == {"mode": "range", "lo": 0.0, "hi": 1.0}
    assert r.image.shape == (32, 32) and r.image.dtype == np.float32
    assert r.lr_psnr > 30
    assert np.abs(r.image - hr).mean() < 0.1  # and the high-res image is close too


@pytest.mark.parametrize("generator", ["tiny", "tiny-rgb"])
def test_planes_and_channels_keep_their_order(generator):
    # Every (plane, channel) is a different constant; a mix-up of axes on the way in or
    # out would put a value where another was. 30 steps fit a constant to ~0.05 here.
    values = np.array([[0.1, 0.5, 0.9], [0.7, 0.3, 0.2]], np.float32)
    a = np.broadcast_to(values[:, None, None, :], (2, 6, 5, 3)).copy()
    exact = SearchConfig(precision="float32")  # the fit's tolerance is float32's
    r = _run(a, generator=generator, steps=30, normalization="range", config=exact)
    assert r.image.shape == (2, 24, 20, 3)
    np.testing.assert_allclose(r.image.mean(axis=(1, 2)), values, atol=0.08)


def test_progress_preview_shows_the_search_converging():
    a = _img((12, 12), np.uint8)  # 2x2 tiles of the tiny generator at factor 4
    previews = []
    for event in iter_upscale(a, generator="tiny", factor=4, steps=6, restarts=2, seed=0):
        if isinstance(event, Finished):
            result = event.result
        elif event.preview is not None:
            previews.append(event.preview())
    assert previews, "search events carry a preview"
    assert all(p.shape == (48, 48) and p.dtype == np.uint8 for p in previews)
    assert not np.array_equal(previews[0], previews[-1])  # it changes as the search runs
    # The last search preview is the searched tiles blended, before the seam refinement.
    assert np.abs(previews[-1].astype(float) - result.image).mean() < 20
