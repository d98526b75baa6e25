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
    first = next(iter(napari_pulse.iter_upscale(noise, generator="tiny", factor=4, steps=2)))
    assert first.stage == "plan" and "foreign image" in first.note  # said before the search
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


def _blob_image(seed: int, size: int = 96) -> np.ndarray:
    """A dark uint8 image with a few bright round blobs (the made-up domain, high-res)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    a = rng.random((size, size)) * 10
    for _ in range(6):
        cy, cx, r = rng.integers(8, size - 8), rng.integers(8, size - 8), rng.integers(4, 8)
        a += 220 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
    return np.clip(a, 0, 255).astype(np.uint8)


def test_fit_domain_writes_a_model_that_upscale_finds_and_uses(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from napari_pulse.degrade import downscale

    monkeypatch.setenv("NAPARI_PULSE_CACHE", str(tmp_path / "cache"))
    domain._LOADED.clear()
    folder = tmp_path / "train"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(_blob_image(i)).save(folder / f"{i}.png")
    args = ["fit-domain", str(folder), "--generator", "tiny", "--factor", "4", "--quiet"]
    assert cli.main(args) == 0
    path = tmp_path / "cache" / "encoders" / domain.file_name("tiny", 4, "bicubic")
    assert f"wrote {path}" in capsys.readouterr().out
    assert domain.find(TinyGenerator(), (1, 8, 8), 4, "bicubic") is not None
    new = np.rint(downscale(_blob_image(99, 64) / 255.0, 4) * 255).astype(np.uint8)
    noise = np.random.default_rng(3).integers(0, 256, (16, 16)).astype(np.uint8)
    kind = napari_pulse.upscale(new, generator="tiny", factor=4, steps=2, restarts=2)
    other = napari_pulse.upscale(noise, generator="tiny", factor=4, steps=2, restarts=2)
    assert other.in_domain is False and kind.domain_score < other.domain_score
    small = tmp_path / "small"  # too small for the tiny generator's 64x64 regions
    small.mkdir()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(small / "a.png")
    assert cli.main(["fit-domain", str(small), "--generator", "tiny", "--factor", "4"]) != 0
    assert "too few training images" in capsys.readouterr().err
    domain._LOADED.clear()
