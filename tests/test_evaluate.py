"""``napari-pulse evaluate`` and its metrics, on the tiny generator with tiny budgets."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from PIL import Image

from napari_pulse.cli import main
from napari_pulse.evaluate import COLUMNS, center_crop, evaluate, find_images
from napari_pulse.metrics import psnr, spearman, ssim

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"generator": "tiny", "factor": 4, "steps": 2, "restarts": 2, "samples": 2}


def _smooth(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((shape[0] // 4, shape[1] // 4, *shape[2:]))
    x = np.repeat(np.repeat(x, 4, axis=0), 4, axis=1)
    return np.clip(x + 0.05 * rng.standard_normal(x.shape), 0, 1)


@pytest.fixture
def hr_dir(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    for i in range(3):
        a = np.rint(_smooth((32, 32), i) * 255).astype(np.uint8)
        Image.fromarray(a).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.mark.parametrize("shape", [(32, 32), (24, 40, 3), (11, 11)])
def test_ssim_matches_skimage(shape):
    metrics = pytest.importorskip("skimage.metrics")
    a = _smooth((shape[0] + 1, shape[1] + 3, *shape[2:]), 0)[: shape[0], : shape[1]]
    b = np.clip(a + 0.1 * np.random.default_rng(1).standard_normal(a.shape), 0, 1)
    expected = metrics.structural_similarity(
        a,
        b,
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=-1 if a.ndim == 3 else None,
    )
    assert ssim(a, b) == pytest.approx(expected, abs=1e-3)


def test_perfect_reconstruction():
    a = _smooth((32, 32, 3), 2)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert psnr(a, a) == pytest.approx(100.0)
    assert ssim(a, 1 - a) < 0.5


def test_ssim_rejects_bad_shapes():
    with pytest.raises(ValueError, match="one shape"):
        ssim(np.zeros((16, 16)), np.zeros((16, 17)))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))


def test_spearman():
    x = np.arange(10.0)
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, np.ones(10)))


def test_center_crop():
    a = np.arange(10 * 13).reshape(10, 13)
    c = center_crop(a, 4)
    assert c.shape == (8, 12)
    assert c[0, 0] == a[1, 0]


def test_evaluate_rows_and_summary(hr_dir):
    ev = evaluate(hr_dir, **FAST)
    assert [r.row["image"] for r in ev.images] == ["img0.png", "img1.png", "img2.png"]
    for r in ev.images:
        assert list(r.row) == COLUMNS
        assert (r.row["height"], r.row["width"]) == (32, 32)
        assert r.row["success"] in (0, 1)
        assert 0 < r.row["ssim_bicubic"] <= 1 and r.row["psnr_bicubic"] > 10
        assert r.row["spread"] >= 0
        assert [p.shape for p in r.panels] == [(32, 32)] * 6
    assert ev.summary["image"] == "summary"
    assert 0 <= ev.summary["success"] <= 1
    assert ev.summary["psnr_mean"] == pytest.approx(
        np.median([r.row["psnr_mean"] for r in ev.images])
    )


def test_a_search_config_reaches_every_image(hr_dir, monkeypatch):
    import napari_pulse.evaluate as evaluate_module
    from napari_pulse.search import SearchConfig

    seen = []
    real = evaluate_module.upscale
    monkeypatch.setattr(
        evaluate_module,
        "upscale",
        lambda *a, **kw: seen.append(kw["options"].config) or real(*a, **kw),
    )
    cfg = SearchConfig(bank=300)
    ev = evaluate(hr_dir, **FAST, config=cfg)
    assert seen == [cfg] * 3
    assert ev.params["config"] == dict(cfg.__dict__)  # plain values, ready for JSON


def test_start_strategies_from_the_evaluate_command(hr_dir, tmp_path, monkeypatch):
    import napari_pulse.evaluate as evaluate_module
    from napari_pulse import guide

    monkeypatch.setattr(guide, "STEPS", 20)
    seen = []
    real = evaluate_module.upscale
    monkeypatch.setattr(
        evaluate_module,
        "upscale",
        lambda *a, **kw: seen.append(kw["options"]) or real(*a, **kw),
    )
    out = tmp_path / "out"
    argv = ["evaluate", str(hr_dir), "--generator", "tiny", "--factor", "4", "--steps", "2"]
    argv += ["--restarts", "2", "--samples", "2", "--out", str(out), "--quiet", "--limit", "1"]
    assert main([*argv, "--bank", "300", "--guide", "--eps", "0.01"]) == 0
    (options,) = seen
    assert (options.config.bank, options.config.guide, options.config.quick) == (300, True, False)
    assert options.eps == 0.01 and options.samples == 2
    seen.clear()
    assert main([*argv, "--quick", "--overwrite"]) == 0
    assert seen[0].config.quick and seen[0].config.bank == guide.QUICK_BANK


def test_limit_picks_a_fixed_subset(hr_dir):
    one = find_images(hr_dir, limit=2, seed=0)
    assert len(one) == 2 and one == find_images(hr_dir, limit=2, seed=0)
    assert len(find_images(hr_dir, limit=10)) == 3


def test_cli_writes_csv_and_png(hr_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["evaluate", str(hr_dir), "--generator", "tiny", "--factor", "4", "--steps", "2"]
    argv += ["--restarts", "2", "--samples", "2", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    with open(out / "evaluation.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == COLUMNS
    assert len(rows) == 4 and rows[-1]["image"] == "summary"
    fig = Image.open(out / "evaluation.png")
    assert fig.width >= 5 * 32 and fig.height >= 3 * 32
    assert capsys.readouterr().err == ""  # --quiet: no bar
    assert main(argv) == 2  # outputs exist: refuse without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_rgb_images(tmp_path):
    folder = tmp_path / "rgb"
    folder.mkdir()
    a = np.rint(_smooth((34, 33, 3), 5) * 255).astype(np.uint8)  # cropped to 32x32
    Image.fromarray(a).save(folder / "a.png")
    ev = evaluate(folder, **{**FAST, "generator": "tiny-rgb"})
    row = ev.images[0].row
    assert (row["height"], row["width"]) == (32, 32)
    assert ev.images[0].panels[2].shape == (32, 32, 3)


@pytest.mark.parametrize(
    "setup,kw,match",
    [
        ("missing", {}, "folder not found"),
        ("empty", {}, "no images"),
        ("ok", {"generator": "no-such-generator"}, "Unknown generator"),
        ("ok", {"factor": 64}, "too large"),
        ("ok", {"samples": 3}, "cannot exceed restarts"),
        ("ok", {"degradation": "psf"}, "sigma"),
        ("small", {}, "too small"),
        ("stack", {}, "single"),
    ],
)
def test_clear_errors(tmp_path, hr_dir, setup, kw, match):
    folder = {"missing": tmp_path / "nope", "ok": hr_dir}.get(setup, tmp_path / setup)
    if setup in ("empty", "small", "stack"):
        folder.mkdir()
    if setup == "small":
        Image.fromarray(np.zeros((6, 6), np.uint8)).save(folder / "s.png")
    if setup == "stack":
        import tifffile

        tifffile.imwrite(folder / "s.tif", np.zeros((2, 32, 32), np.uint8))
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        evaluate(folder, **{**FAST, **kw})


def test_cli_error_exit_code(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["evaluate", str(empty), "--generator", "tiny", "--factor", "4", "--quiet"]
    assert main(argv) == 2
    assert "no images" in capsys.readouterr().err
