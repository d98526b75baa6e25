"""The foreign-image flag: a model of the generator's training tiles, found beside it, and
its verdict in every result (napari_pulse.domain)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import napari_pulse
from conftest import blob_model, blob_tiles
from napari_pulse import cli, domain, pipeline
from napari_pulse.api import check_image
from napari_pulse.generators import load
from napari_pulse.generators.tiny import TinyGenerator
from napari_pulse.options import Options

pytestmark = pytest.mark.usefixtures("one_thread")
SAMPLE = Path(napari_pulse.__file__).parent / "data" / "nuclei_lr.png"


def test_tile_features_read_intensity_steps_and_texture():
    flat = torch.zeros(2, 1, 8, 8)
    f = domain.tile_features(flat)
    assert f.shape == (2, 14)
    assert f[0, 7] == 1 and f[0, 8:13].sum() == 0  # every pixel in the darkest bin
    rgb = torch.rand(3, 3, 8, 8)
    torch.testing.assert_close(domain.tile_features(rgb), domain.tile_features(rgb.mean(1, True)))


def test_a_model_scores_its_domain_below_one_and_other_tiles_above(tmp_path):
    model = blob_model()
    assert model.score(blob_tiles(9, 999)) <= 1  # a new field of the domain
    noise = torch.rand(9, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    assert model.score(noise) > 1
    assert model.score(torch.full((9, 1, 8, 8), 0.6)) > 1  # flat grey: no background, no blob
    again = domain.load(domain.save(tmp_path / "m.safetensors", model))
    assert again.cut == pytest.approx(model.cut) and again.k == 5
    torch.testing.assert_close(again.distances(noise), model.distances(noise))
    with pytest.raises(ValueError, match="not a readable domain model"):
        domain.load(tmp_path / "missing.safetensors")


def test_a_large_field_is_scored_in_chunks_with_the_same_distances(monkeypatch):
    model = blob_model()
    tiles = torch.cat([blob_tiles(10, 5), torch.rand(7, 1, 8, 8)])
    whole = model.distances(tiles)
    monkeypatch.setattr(domain, "CHUNK", 3)  # torch.quantile refuses more than 2**24 values
    torch.testing.assert_close(model.distances(tiles), whole)


def test_only_a_model_made_for_these_weights_tile_and_factor_is_found(tiny_domain):
    gen, name = TinyGenerator(), tiny_domain.name
    assert domain.find(gen, (1, 8, 8), 4, "bicubic") is not None
    domain.save(tiny_domain, blob_model(generator_sha256="other weights"))
    domain._LOADED.clear()
    assert domain.find(gen, (1, 8, 8), 4, "bicubic") is None
    domain.save(tiny_domain, blob_model())
    assert domain.find(gen, (1, 8, 8), 4, "bicubic") is not None
    assert domain.find(gen, (1, 4, 4), 4, "bicubic") is None  # another tile
    assert domain.find(gen, (1, 8, 8), 2, "bicubic") is None  # another factor
    tiny_domain.write_bytes(b"damaged")
    domain._LOADED.clear()
    assert domain.find(gen, (1, 8, 8), 4, "bicubic") is None  # no flag, no failure
    assert name not in napari_pulse.generators.available()


def test_every_result_carries_the_verdict_and_the_command_warns(tiny_domain, tmp_path, capsys):
    noise = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    r = napari_pulse.upscale(noise, generator="tiny", factor=4, steps=2, restarts=2)
    assert r.in_domain is False and r.domain_score > 1
    assert r.domain_tiles.shape == r.lr_psnr_tiles.shape
    assert r.params["domain"]["in_domain"] is False
    assert any("foreign image" in m for m in r.warnings())
    from PIL import Image

    Image.fromarray((noise * 255).astype(np.uint8)).save(tmp_path / "in.png")
    args = ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.tif")]
    assert cli.main([*args, "--generator", "tiny", "--steps", "2", "--restarts", "2"]) == 0
    assert "warning: foreign image" in capsys.readouterr().err
    tiny_domain.unlink()
    bare = napari_pulse.upscale(noise, generator="tiny", factor=4, steps=2, restarts=2)
    assert bare.in_domain is None and bare.domain_score is None  # no model: no verdict
    assert bare.params["domain"] is None and not any("foreign" in m for m in bare.warnings())


def _bundled_score(image: np.ndarray) -> float:
    setup = Options(generator="nuclei", factor=4).resolve(False)
    arr, rgb = check_image(image, None)
    _, job = pipeline.prepare(arr, rgb, setup)
    model = domain.find(load("nuclei"), tuple(job.lr_tiles.shape[1:]), 4, "bicubic")
    assert model is not None, "the bundled nuclei x4 domain model is missing"
    return model.score(job.lr_tiles)


def test_the_bundled_model_keeps_the_sample_and_flags_a_photograph():
    from PIL import Image
    from skimage import data

    assert _bundled_score(np.asarray(Image.open(SAMPLE))) <= 1
    assert _bundled_score(data.camera()[::8, ::8]) > 1  # 64x64 of a photograph
    assert _bundled_score(data.text()[::4, ::4]) > 1  # dark text on a bright page
