"""Devices: every device that is not here, or that the search does not run on, is a
ValueError naming the devices that are; a failed call leaves nothing behind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_pulse
from napari_pulse.generators import load
from napari_pulse.options import Options, pick_device, present_devices

pytestmark = pytest.mark.usefixtures("one_thread")

IMAGE = (np.random.default_rng(0).random((8, 8)) * 255).astype(np.uint8)
FAST = dict(generator="tiny", factor=2, steps=2, restarts=2)
OTHER_TYPES = ["hip", "xpu", "ipu", "xla", "lazy", "vulkan", "mtia", "hpu", "mkldnn", "fpga",
               "meta", "ve", "ort", "maia", "privateuseone"]  # fmt: skip


@pytest.mark.parametrize("device", OTHER_TYPES)
def test_devices_the_search_does_not_run_on_are_value_errors(device):
    before = IMAGE.copy()
    with pytest.raises(ValueError, match="devices here: auto, cpu") as info:
        napari_pulse.upscale(IMAGE, device=device, **FAST)
    assert device in str(info.value)
    np.testing.assert_array_equal(IMAGE, before)
    assert napari_pulse.upscale(IMAGE, **FAST).image.shape == (16, 16)  # nothing left broken


@pytest.mark.parametrize(
    "device, match",
    [
        ("bogus", "Unknown device 'bogus'"),
        ("cpu:1", "the CPU has no index"),
        ("", "Unknown device"),
        ("cuda:99" if torch.cuda.is_available() else "cuda:0", "CUDA GPU"),
        ("mps" if "mps" not in present_devices() else "cuda:99", "MPS|CUDA"),
    ],
)
def test_other_bad_devices_are_value_errors(device, match):
    with pytest.raises(ValueError, match=match):
        Options(device=device)


@pytest.mark.parametrize("device", [3, None, 1.5, ["cpu"]])
def test_a_device_that_is_not_a_name_is_a_type_error(device):
    with pytest.raises(TypeError, match="device must be a string"):
        pick_device(device)


def test_device_objects_are_checked_like_names():
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="does not run on device 'meta'"):
        pick_device(torch.device("meta"))


def test_the_registry_generator_is_never_moved_by_a_call():
    gen = load("tiny")
    ids = {k: v.data_ptr() for k, v in gen.state_dict().items()}
    for device in ("meta", "xla", "cpu"):
        try:
            napari_pulse.upscale(IMAGE, device=device, **FAST)
        except ValueError:
            pass
    assert {k: v.data_ptr() for k, v in gen.state_dict().items()} == ids
    assert all(v.device.type == "cpu" for v in gen.state_dict().values())
