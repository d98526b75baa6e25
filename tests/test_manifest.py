"""The npe2 manifest and the sample data it points to."""

from __future__ import annotations

from importlib.metadata import entry_points

import numpy as np
import pytest

npe2 = pytest.importorskip("npe2")


def test_manifest_is_registered_and_valid():
    eps = [ep for ep in entry_points(group="napari.manifest") if ep.name == "napari-pulse"]
    assert eps, "napari.manifest entry point missing"
    pm = npe2.PluginManifest.from_distribution("napari-pulse")
    assert pm.name == "napari-pulse"
    for cmd in pm.contributions.commands:
        assert cmd.id.startswith("napari-pulse.")
    assert [s.key for s in pm.contributions.sample_data] == ["face", "nuclei"]


def test_face_sample_is_a_small_rgb_image():
    from napari_pulse._sample_data import face_sample

    [(data, meta)] = face_sample()
    assert data.shape == (8, 8, 3) and data.dtype == np.uint8 and meta["rgb"]
    assert data.std() > 5  # a face, not a blank


def test_nuclei_sample_is_a_small_grayscale_field():
    from napari_pulse._sample_data import nuclei_sample

    [(data, meta)] = nuclei_sample()
    assert data.shape == (64, 64) and data.dtype == np.uint8
    assert data.std() > 5 and "nuclei" in meta["name"]
