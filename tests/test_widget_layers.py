"""The result-layer builder and the worker's event stream: pure functions, no display."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from napari_pulse._widget.layers import (
    SPREAD_COLORMAP,
    outer_corners,
    result_layers,
    result_name,
    upscaled_geometry,
)
from napari_pulse._widget.runner import stream_events
from napari_pulse.events import Progress
from napari_pulse.options import Options

FAST = {"generator": "tiny", "steps": 3, "restarts": 2}


@pytest.mark.parametrize(
    ("scale", "translate", "factor"),
    [((1.0, 1.0), (0.0, 0.0), 2), ((0.5, 2.0), (3.0, -7.5), 4), ((0.13, 0.13), (1.1, 2.2), 3)],
)
def test_outer_corners_of_result_and_source_coincide(scale, translate, factor):
    shape = (5, 7)
    out_scale, out_translate = upscaled_geometry(scale, translate, factor)
    np.testing.assert_allclose(out_scale, np.asarray(scale) / factor)
    src = outer_corners(shape, scale, translate)
    dst = outer_corners([n * factor for n in shape], out_scale, out_translate)
    np.testing.assert_allclose(src[0], dst[0], atol=1e-12)
    np.testing.assert_allclose(src[1], dst[1], atol=1e-12)


def test_leading_axes_keep_their_scale_and_offset_selects_the_plane():
    out_scale, out_translate = upscaled_geometry((2.0, 1.0, 1.0), (10.0, 0, 0), 2, (3, 0, 0))
    assert out_scale == (2.0, 0.5, 0.5)
    assert out_translate == (16.0, -0.25, -0.25)


def _result(samples=1, rgb=False, success=True):
    shape = (8, 8, 3) if rgb else (8, 8)
    img = np.zeros(shape, np.uint8)
    return SimpleNamespace(
        image=img,
        std=np.ones(shape, np.float32) if samples > 1 else None,
        params={"factor": 2, "generator": "tiny"},
        lr_psnr=31.5,
        lr_psnr_tiles=np.array([[31.5]]),
        success=success,
        sample_lr_psnr=[31.5] * samples,
    )


def test_result_layers_carry_name_geometry_display_and_metadata():
    [(data, meta, kind)] = result_layers(
        _result(),
        source_name="cells",
        generator="tiny",
        factor=2,
        scale=(1.0, 1.0),
        translate=(0.0, 0.0),
        colormap="green",
        contrast_limits=(10, 200),
    )
    assert kind == "image" and data.shape == (8, 8)
    assert meta["name"] == result_name("cells", 2, "tiny") == "cells x2 (tiny)"
    assert meta["scale"] == (0.5, 0.5) and meta["translate"] == (-0.25, -0.25)
    assert meta["colormap"] == "green" and meta["contrast_limits"] == [10.0, 200.0]
    md = meta["metadata"]
    assert md["lr_psnr"] == 31.5 and md["success"] is True and md["params"]["factor"] == 2


def test_several_samples_add_a_spread_layer_rgb_spread_is_one_channel():
    layers = result_layers(
        _result(samples=3, rgb=True),
        source_name="face",
        generator="tiny-rgb",
        factor=2,
        scale=(1.0, 1.0),
        translate=(0.0, 0.0),
        rgb=True,
        colormap="gray",
    )
    assert [m["name"] for _, m, _ in layers] == ["face x2 (tiny-rgb)", "face x2 (tiny-rgb) spread"]
    assert "colormap" not in layers[0][1]  # RGB: no colormap carried
    spread, meta, _ = layers[1]
    assert spread.shape == (8, 8) and meta["colormap"] == SPREAD_COLORMAP
    assert meta["scale"] == layers[0][1]["scale"]
    assert meta["translate"] == layers[0][1]["translate"]


def test_stream_events_returns_the_result_and_throttles_progress():
    img = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    options = Options(**FAST, factor=4)
    gen = stream_events(img, options, threading.Event(), min_interval=10.0)
    events = []
    with pytest.raises(StopIteration) as stop:
        while True:
            events.append(next(gen))
    assert all(isinstance(e, Progress) for e in events)
    assert len(events) <= 2  # the first and the last, at a 10 s interval
    assert stop.value.value.image.shape == (32, 32)


def test_stream_events_stops_within_one_step_when_cancelled():
    img = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    flag = threading.Event()
    gen = stream_events(img, Options(**{**FAST, "steps": 10_000}, factor=4), flag, min_interval=0)
    first = next(gen)
    flag.set()
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value is None and first.done < 5
