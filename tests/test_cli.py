"""The ``napari-pulse`` command line, run in-process through ``main`` (and once as a process).

Upscales use the ``tiny`` generator: an untrained, randomly initialised 32x32 grayscale
network that is cheap to run. It cannot explain real images, so ``success`` is usually
False here; these tests check the plumbing, not the quality.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_pulse import __version__, cli
from napari_pulse.imageio import read_tiff_metadata

FAST = ["--generator", "tiny", "--factor", "4", "--steps", "5", "--restarts", "2"]


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 12), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def tif(tmp_path):
    path = tmp_path / "in.tif"
    smooth = np.linspace(0, 60000, 8 * 10, dtype=np.uint16).reshape(8, 10)
    tifffile.imwrite(path, smooth)
    return path


def test_upscale_png(png, tmp_path, capsys):
    out = tmp_path / "out.tif"
    assert cli.main(["upscale", str(png), "-o", str(out), *FAST, "--quiet"]) == 0
    image = tifffile.imread(out)
    assert image.shape == (32, 48) and image.dtype == np.uint8
    meta = read_tiff_metadata(out)
    assert meta["factor"] == 4 and meta["generator"] == "tiny" and meta["steps"] == 5
    assert isinstance(meta["lr_psnr"], float) and isinstance(meta["success"], bool)
    assert meta["input"] == str(png.resolve())
    assert capsys.readouterr().out == ""  # --quiet: no summary


def test_upscale_uint16_tiff_summary_and_warning(tif, tmp_path, capsys):
    out = tmp_path / "out.tiff"
    assert cli.main(["upscale", str(tif), "-o", str(out), *FAST]) == 0
    image = tifffile.imread(out)
    assert image.shape == (32, 40) and image.dtype == np.uint16
    meta = read_tiff_metadata(out)
    captured = capsys.readouterr()
    assert str(out) in captured.out and "lr_psnr" in captured.out and "dB" in captured.out
    assert f"{meta['lr_psnr']:.2f} dB" in captured.out
    assert ("could not explain" in captured.err) == (not meta["success"])
    # tiny has no encoder: the command says how to make one.
    assert meta["encoder"] is None and "napari-pulse train-encoder" in captured.err


def test_intermediate_mode_records_its_settings_and_warns_out_of_domain(png, tmp_path, capsys):
    out = tmp_path / "out.tif"
    args = ["upscale", str(png), "-o", str(out), *FAST, "--mode", "intermediate"]
    args += ["--layers", "2", "--radius", "0.05", "--feature-steps", "10"]
    assert cli.main(args) == 0
    meta = read_tiff_metadata(out)
    assert meta["mode"] == "intermediate" and meta["intermediate"]["layers"] == [2]
    assert meta["intermediate"]["radius"] == 0.05 and 0 <= meta["ood_score"] <= 1 + 1e-6
    # Random pixels on an untrained generator need all of a small ball: a warning says so.
    assert meta["ood_score"] > 0.9 and "out-of-domain score" in capsys.readouterr().err


def test_warm_start_bank_records_atypicality_and_warns(png, tmp_path, capsys):
    out = tmp_path / "out.tif"
    assert cli.main(["upscale", str(png), "-o", str(out), *FAST, "--bank", "300"]) == 0
    meta = read_tiff_metadata(out)
    assert meta["search"]["bank"] == 300
    # Random pixels are farther from the tiny generator's images than they are from each
    # other: the score is at its top and the command says so.
    assert meta["atypicality"] == 1.0 and "atypicality 1.00" in capsys.readouterr().err
    out2 = tmp_path / "plain.tif"
    assert cli.main(["upscale", str(png), "-o", str(out2), *FAST, "--quiet"]) == 0
    assert read_tiff_metadata(out2)["atypicality"] is None
    assert "atypicality" not in capsys.readouterr().err
    assert (
        cli.main(["upscale", str(png), "-o", str(tmp_path / "x.tif"), *FAST, "--bank", "-1"]) == 2
    )
    assert "config.bank must be an integer >= 0" in capsys.readouterr().err


def test_quick_wave_from_the_command_line(png, tmp_path):
    out = tmp_path / "out.tif"
    assert cli.main(["upscale", str(png), "-o", str(out), *FAST, "--quick", "--quiet"]) == 0
    meta = read_tiff_metadata(out)
    assert meta["search"]["quick"] is True and meta["search"]["bank"] == cli.QUICK_BANK
    assert meta["quick_wave_tiles_at_eps"] == 0  # random pixels: the full search ran


def test_rgb_input_and_samples(tmp_path):
    src = tmp_path / "rgb.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(src)
    out = tmp_path / "up.tif"
    args = ["upscale", str(src), "-o", str(out), *FAST, "--samples", "2", "--quiet"]
    assert cli.main(args) == 0
    assert tifffile.imread(out).shape == (32, 32, 3)
    samples = tifffile.imread(tmp_path / "up_samples.tif")
    std = tifffile.imread(tmp_path / "up_std.tif")
    assert samples.shape == (2, 32, 32, 3) and samples.dtype == np.uint8
    assert std.shape == (32, 32, 3) and std.dtype == np.float32
    assert read_tiff_metadata(tmp_path / "up_std.tif")["content"] == "std"
    assert len(read_tiff_metadata(out)["sample_lr_psnr"]) == 2


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_refuses_to_write_over_input(tif, tmp_path, capsys, overwrite):
    before = tif.read_bytes()
    spelled_differently = tmp_path / "." / ".." / tmp_path.name / "in.TIF"
    targets = [tif, tmp_path / ".." / tmp_path.name / "in.tif"]
    if spelled_differently.exists():  # case-insensitive file systems
        targets.append(spelled_differently)
    for target in targets:
        assert cli.main(["upscale", str(tif), "-o", str(target), *FAST, *overwrite]) == 2
        assert "input" in capsys.readouterr().err
    assert tif.read_bytes() == before


def test_refuses_symlink_to_input(tif, tmp_path, capsys):
    link = tmp_path / "link.tif"
    try:
        link.symlink_to(tif)
    except OSError:
        pytest.skip("symlinks not available here")
    before = tif.read_bytes()
    assert cli.main(["upscale", str(tif), "-o", str(link), *FAST, "--overwrite"]) == 2
    assert "input" in capsys.readouterr().err
    assert tif.read_bytes() == before


def test_existing_output_needs_overwrite(png, tmp_path, capsys):
    out = tmp_path / "out.tif"
    out.write_bytes(b"precious")
    assert cli.main(["upscale", str(png), "-o", str(out), *FAST, "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert cli.main(["upscale", str(png), "-o", str(out), *FAST, "--quiet", "--overwrite"]) == 0
    assert tifffile.imread(out).shape == (32, 48)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--factor", "1"], "factor must be at least 2"),
        (["--factor", "32"], "too large"),
        (["--factor", "four"], "invalid int value"),
        (["--steps", "0"], "steps"),
        (["--degradation", "psf"], "sigma"),
        (["--generator", "nonexistent"], "Unknown generator"),
        (["--device", "not-a-device"], "not a device"),
        (["--mode", "intermediate", "--layers", "7"], "indices in 0..2"),
        (["--mode", "intermediate", "--radius", "0"], "radius must be > 0"),
    ],
)
def test_bad_arguments_exit_2_without_traceback(png, tmp_path, capsys, extra, message):
    out = tmp_path / "out.tif"
    args = ["upscale", str(png), "-o", str(out), *FAST, *extra]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_bad_paths_exit_2(png, tmp_path, capsys):
    assert cli.main(["upscale", str(png), "-o", str(tmp_path / "out.png"), *FAST]) == 2
    assert ".tif" in capsys.readouterr().err
    assert cli.main(["upscale", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.tif")]) == 2
    assert "napari-pulse: error: input file not found" in capsys.readouterr().err
    assert cli.main(["upscale", str(png), "-o", str(tmp_path / "no" / "o.tif"), *FAST]) == 2
    assert "folder does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["search", "write"])
def test_ctrl_c_exits_130_and_leaves_no_file(png, tmp_path, monkeypatch, capsys, where):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "search":
        monkeypatch.setattr(cli, "upscale", interrupt)
    else:
        monkeypatch.setattr("napari_pulse.imageio.tifffile.imwrite", interrupt)
    out = tmp_path / "out.tif"
    assert cli.main(["upscale", str(png), "-o", str(out), *FAST, "--quiet"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_generators_lists_bundled(capsys):
    assert cli.main(["generators"]) == 0
    lines = capsys.readouterr().out.splitlines()
    by_name = {line.split()[0]: line for line in lines}
    assert "tiny" in by_name and "faces-dcgan64" in by_name
    assert by_name["tiny"].endswith("[ok]")
    assert "[ok]" in by_name["faces-dcgan64"] or "unavailable: " in by_name["faces-dcgan64"]


@pytest.mark.parametrize("argv", [["--help"], ["upscale", "--help"], ["generators", "--help"]])
def test_help(capsys, argv):
    assert cli.main(argv) == 0
    assert "usage: napari-pulse" in capsys.readouterr().out


def test_help_says_not_ground_truth(capsys):
    cli.main(["upscale", "--help"])
    assert "not ground truth" in " ".join(capsys.readouterr().out.split())


def test_version_and_missing_command(capsys):
    assert cli.main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out
    assert cli.main([]) == 2
    assert "required" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["napari_pulse", "napari_pulse.cli"])
def test_runs_as_a_module(module):
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: napari-pulse" in proc.stdout
    assert "upscale" in proc.stdout and "generators" in proc.stdout


def test_eps_and_overlap_from_the_command_line(tmp_path, capsys):
    src = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (8, 20), dtype=np.uint8)).save(src)
    out = tmp_path / "out.tif"
    args = ["upscale", str(src), "-o", str(out), *FAST, "--eps", "0.5", "--overlap", "3"]
    assert cli.main([*args, "--quiet"]) == 0
    meta = read_tiff_metadata(out)
    assert meta["eps"] == 0.5 and meta["search"]["eps"] == 0.5
    assert meta["tiles"]["overlap"] == 3 and meta["tiles"]["grid"] == [1, 4]  # 3 by default
    assert meta["success"] is (meta["lr_mse"] <= 0.5)
    assert cli.main([*args[:-1], "8", "--overwrite"]) == 2  # a tile is 8 pixels wide
    assert "overlap must be an integer from 0 to 7" in capsys.readouterr().err
    assert cli.main([*args[:-3], "0", "--overwrite"]) == 2
    assert "eps must be a positive number" in capsys.readouterr().err


def test_guided_starts_from_the_command_line(png, tmp_path, monkeypatch):
    from napari_pulse import guide

    monkeypatch.setattr(guide, "STEPS", 40)
    out = tmp_path / "out.tif"
    args = ["upscale", str(png), "-o", str(out), *FAST, "--guide", "--bank", "300", "--quiet"]
    assert cli.main(args) == 0
    meta = read_tiff_metadata(out)
    assert meta["search"]["guide"] is True and meta["search"]["bank"] == 300
    assert guide.bank_size(0, quick=True, guided=True) == cli.GUIDE_BANK == 16384
    assert guide.bank_size(0, quick=True, guided=False) == cli.QUICK_BANK
