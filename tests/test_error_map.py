"""The expected-error map: its figures, its fit, its file, and where it reaches the user
(napari_pulse.error_map). Tiny random generators, and made-up weights for them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F

import napari_pulse
from conftest import tiny_error_model
from napari_pulse import cli, error_map
from napari_pulse._widget.layers import result_layers
from napari_pulse.evaluate import evaluate
from napari_pulse.generators import load
from napari_pulse.generators.tiny import TinyGenerator
from napari_pulse.imageio import read_tiff_metadata

pytestmark = pytest.mark.usefixtures("one_thread")
KW = dict(generator="tiny", factor=4, steps=4, restarts=2)
FAST = ["--generator", "tiny", "--steps", "4", "--restarts", "2", "--quiet"]


def _planes(seed: int, h: int = 8, w: int = 12):
    rng = np.random.default_rng(seed)
    low = rng.random((1, 1, h, w))
    image = np.clip(rng.random((1, 1, 4 * h, 4 * w)), 0, 1)
    return image, low


def _bicubic(low: np.ndarray, f: int = 4) -> np.ndarray:
    t = torch.from_numpy(low)
    return F.interpolate(t, scale_factor=f, mode="bicubic").clamp(0, 1).numpy()


def test_an_image_that_is_the_smooth_upsampling_of_its_input_only_pays_its_slope():
    low = np.full((1, 1, 6, 6), 0.4)
    f = error_map.features(_bicubic(low), low).numpy()
    assert f.shape == (1, 1, 24, 24, 3)
    np.testing.assert_allclose(f[..., :2], 0, atol=1e-12)  # no departure, flat
    np.testing.assert_allclose(f[..., 2], 1)
    model = error_map.ErrorModel((2.0, 3.0, 1e-4), {})
    np.testing.assert_allclose(model.map(_bicubic(low), low), 1e-2)  # sqrt of the floor
    ramp = np.broadcast_to(np.linspace(0, 1, 24), (1, 1, 24, 24)).copy()
    g = error_map.features(ramp, low).numpy()[..., 1]
    np.testing.assert_allclose(g[0, 0, 4:-4, 4:-4], (1 / 23) ** 2, rtol=1e-9)  # its slope


def test_invented_detail_is_where_the_expected_error_is_high():
    low = np.full((1, 1, 8, 8), 0.3)
    image = _bicubic(low)
    image[0, 0, 10:13, 20:23] = 0.9  # a spot the input does not hold
    e = tiny_error_model().map(image, low)[0, 0]
    assert e[11, 21] > 5 * e[28, 4] and e[11, 21] == e.max()


def test_the_fit_recovers_the_weights_of_an_error_made_to_follow_them():
    want = torch.tensor([0.8, 0.3, 2e-4], dtype=torch.float64)
    cases = []
    for seed in range(3):
        image, low = _planes(seed)
        expected = (error_map.features(image, low) @ want).numpy()
        cases.append((image, low, image - np.sqrt(expected)))  # its squared error: expected
    model = error_map.fit(cases, {"generator": "x"})
    np.testing.assert_allclose(model.weights, want.numpy(), rtol=1e-6)
    image, low, truth = cases[0]
    np.testing.assert_allclose(model.map(image, low), np.abs(image - truth), rtol=1e-6)


def test_the_fit_never_gives_a_negative_weight():
    a = torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)  # falling: a negative slope
    w = error_map._nnls(a, b)
    assert (w >= 0).all() and w[0] == 0 and w[1] == pytest.approx(2.0)


def test_a_model_file_round_trips_and_only_one_made_for_these_weights_is_found(tiny_errors):
    gen = TinyGenerator()
    found = error_map.find(gen, 4, "bicubic")
    assert found is not None and found.weights == (1.0, 0.5, 1e-4)
    assert found.path == tiny_errors
    assert error_map.find(gen, 2, "bicubic") is None  # another factor
    assert error_map.find(gen, 4, "psf", 1.0) is None  # another operator
    error_map.save(tiny_errors, tiny_error_model(generator_sha256="other weights"))
    error_map._LOADED.clear()
    assert error_map.find(gen, 4, "bicubic") is None
    tiny_errors.write_text("{damaged")
    error_map._LOADED.clear()
    assert error_map.find(gen, 4, "bicubic") is None  # no map, no failure
    with pytest.raises(ValueError, match="not a readable error model"):
        error_map.load(tiny_errors)
    bad = json.loads(json.dumps({"napari_pulse.error_map": {}, "weights": {}}))
    bad["weights"] = {"departure": -1.0, "gradient": 0.0, "floor": 0.0}
    tiny_errors.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="non-negative"):
        error_map.load(tiny_errors)


def test_the_bundled_model_is_made_for_the_bundled_nuclei_generator():
    model = error_map.find(load("nuclei"), 4, "bicubic")
    assert model is not None and all(w >= 0 for w in model.weights)
    assert model.card["fit"]["spearman_median"] > 0.4  # it ranks the error it was fitted on


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_every_result_carries_the_map_in_its_units(tiny_errors, dtype):
    rng = np.random.default_rng(0)
    image = (rng.random((12, 20)) * (255 if dtype == np.uint8 else 4000)).astype(dtype)
    r = napari_pulse.upscale(image, **KW, normalization="minmax")
    assert r.error.shape == r.image.shape and r.error.dtype == np.float32
    assert r.params["error_map"] == tiny_errors.name
    rms, share = r.expected_rms()
    assert rms == pytest.approx(float(np.sqrt(np.mean(r.error.astype(np.float64) ** 2))))
    assert share == pytest.approx(rms / (r.params["normalization"]["hi"] - lo_of(r)))
    lo, hi = float(image.min()), float(image.max())
    from napari_pulse.intensity import fit_intensity

    unit = fit_intensity(image, "minmax")
    planes = unit.to_unit(r.image)[None, None]
    low = unit.to_unit(image)[None, None]
    want = tiny_error_model().map(planes, low)[0, 0] * (hi - lo)
    np.testing.assert_allclose(r.error, want, rtol=1e-4, atol=1e-6 * (hi - lo))


def lo_of(r) -> float:
    return r.params["normalization"]["lo"]


def test_without_a_model_there_is_no_map():
    r = napari_pulse.upscale(np.zeros((8, 8), np.uint8), **KW)
    assert r.error is None and r.params["error_map"] is None and r.expected_rms() is None


def test_the_command_writes_the_map_beside_the_result_and_the_viewer_gets_a_layer(
    tiny_errors, tmp_path, capsys
):
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, np.random.default_rng(1).integers(0, 256, (8, 8), dtype=np.uint8))
    out = tmp_path / "up.tif"
    assert cli.main(["upscale", str(src), "-o", str(out), *FAST[:-1]]) == 0
    said = capsys.readouterr().out
    assert "expected error: RMS" in said and "of the intensity range" in said
    error = tifffile.imread(tmp_path / "up_error.tif")
    assert error.shape == tifffile.imread(out).shape and error.dtype == np.float32
    assert read_tiff_metadata(tmp_path / "up_error.tif")["content"] == "error"
    again = ["upscale", str(src), "-o", str(tmp_path / "again.tif"), *FAST]
    (tmp_path / "again_error.tif").write_bytes(b"theirs")
    assert cli.main(again) != 0  # an existing companion is not overwritten
    assert (tmp_path / "again_error.tif").read_bytes() == b"theirs"
    r = napari_pulse.upscale(np.full((8, 8), 90, np.uint8), **KW)
    layers = result_layers(
        r, source_name="cells", generator="tiny", factor=4, scale=[1, 1], translate=[0, 0]
    )
    names = [meta["name"] for _, meta, _ in layers]
    assert names == ["cells x4 (tiny)", "cells x4 (tiny) expected error"]
    data, meta, _ = layers[1]
    assert np.array_equal(data, r.error) and meta["visible"] is False


def test_evaluate_reports_how_well_the_map_ranks_and_sizes_the_error(tiny_errors, tmp_path):
    hr = tmp_path / "hr"
    hr.mkdir()
    rng = np.random.default_rng(3)
    tifffile.imwrite(hr / "a.tif", (rng.random((32, 32)) * 255).astype(np.uint8))
    from napari_pulse.options import Options

    ev = evaluate(hr, options=Options(**KW))
    row = ev.images[0].row
    assert -1 <= row["expected_error_spearman"] <= 1
    assert row["expected_error_rms"] > 0 and row["error_rms"] > 0


def test_the_map_computed_in_bands_equals_the_map_computed_whole(monkeypatch):
    image, low = _planes(4, h=20, w=6)
    whole = tiny_error_model().map(image, low)
    monkeypatch.setattr(error_map, "BAND", 8)  # 2 low-res rows a band, 3 of halo
    assert np.array_equal(tiny_error_model().map(image, low), whole)


def test_only_the_companions_a_result_can_have_are_claimed(tiny_errors, tmp_path):
    from napari_pulse.options import Options
    from napari_pulse.writing import companion_kinds

    assert companion_kinds(Options(generator="tiny", factor=4)) == ("error",)
    assert companion_kinds(Options(generator="tiny", factor=4, samples=2)) == (
        "samples",
        "std",
        "error",
    )
    assert companion_kinds(Options(generator="tiny", factor=2)) == ()  # no model at x2
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, np.zeros((8, 8), np.uint8))
    (tmp_path / "up_error.tif").write_bytes(b"theirs")
    args = ["upscale", str(src), "-o", str(tmp_path / "up.tif"), *FAST, "--factor", "2"]
    assert cli.main(args) == 0  # x2 writes no map, so the file in the way is not in the way
    assert (tmp_path / "up_error.tif").read_bytes() == b"theirs"


def test_a_float64_image_of_huge_values_gets_a_finite_map(tiny_errors):
    image = (np.random.default_rng(5).random((8, 8)) * 2 - 1) * 1e308
    r = napari_pulse.upscale(image, **KW, normalization="minmax")
    assert r.error.dtype == np.float64 and np.isfinite(r.error).all() and r.error.max() > 1e300
    rms, share = r.expected_rms()
    assert np.isfinite(rms) and rms > 1e300 and 0 < share < 1


def test_an_unloadable_default_generator_claims_no_companion(monkeypatch):
    from napari_pulse import writing
    from napari_pulse.options import Options

    real = writing.load

    def without_faces(name):
        if name == "faces-dcgan64":  # as where the face weights are not installed
            raise FileNotFoundError("no face weights")
        return real(name)

    monkeypatch.setattr(writing, "load", without_faces)
    assert writing.companion_kinds(Options(factor=4)) == ("error",)  # nuclei's model
    assert writing.companion_kinds(Options(factor=8)) == ()


def test_fit_error_map_writes_a_model_that_upscale_finds_and_uses(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NAPARI_PULSE_CACHE", str(tmp_path / "cache"))
    error_map._LOADED.clear()
    folder = tmp_path / "train"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        tifffile.imwrite(folder / f"{i}.tif", (rng.random((80, 80)) * 255).astype(np.uint8))
    args = ["fit-error-map", str(folder), "--generator", "tiny", "--factor", "4", "--crops", "2"]
    assert cli.main([*args, "--steps", "4", "--restarts", "2", "--quiet"]) == 0
    path = tmp_path / "cache" / "encoders" / error_map.file_name("tiny", 4, "bicubic")
    said = capsys.readouterr().out
    assert f"wrote {path}" in said and "rank correlation" in said
    model = error_map.load(path)
    assert len(model.card["files"]) == 2 and model.card["seed"] == 0
    assert all(w >= 0 for w in model.weights) and sum(model.weights) > 0
    r = napari_pulse.upscale(np.full((8, 8), 90, np.uint8), **KW)
    assert r.error is not None and r.params["error_map"] == path.name
    small = tmp_path / "small"  # too small for the tiny generator's 64x64 regions
    small.mkdir()
    tifffile.imwrite(small / "a.tif", np.zeros((20, 20), np.uint8))
    assert cli.main(["fit-error-map", str(small), "--generator", "tiny", "--factor", "4"]) != 0
    assert "holds a 64x64 crop" in capsys.readouterr().err
    error_map._LOADED.clear()
