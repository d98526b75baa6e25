"""The command line on bad files: every plane read or a clear refusal, exit 2 with a
message (never a traceback), and the input file left as it was."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_pulse import cli
from napari_pulse.imageio import read_image

FAST = ["--generator", "tiny", "--factor", "4", "--steps", "2", "--restarts", "2", "--quiet"]


def _series_file(path, shapes):
    rng = np.random.default_rng(0)
    planes = [rng.integers(0, 256, s, dtype=np.uint8) for s in shapes]
    with tifffile.TiffWriter(path) as w:
        for p in planes:
            w.write(p)  # one series per page, as page-by-page writers leave them
    return planes


def test_a_tiff_of_several_series_is_read_as_a_stack(tmp_path):
    path = tmp_path / "pages.tif"
    planes = _series_file(path, [(8, 8)] * 3)
    assert len(tifffile.TiffFile(path).series) == 3
    np.testing.assert_array_equal(read_image(path), np.stack(planes))
    out = tmp_path / "out.tif"
    before = path.read_bytes()
    assert cli.main(["upscale", str(path), "-o", str(out), *FAST]) == 0
    assert tifffile.imread(out).shape == (3, 32, 32)  # every plane, none dropped
    assert path.read_bytes() == before


def test_a_tiff_of_series_of_different_shapes_is_refused_with_what_was_found(tmp_path, capsys):
    path = tmp_path / "mixed.tif"
    _series_file(path, [(8, 8), (4, 6)])
    out = tmp_path / "out.tif"
    assert cli.main(["upscale", str(path), "-o", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert "2 image series of different shapes" in err and "4x6 uint8" in err
    assert "Traceback" not in err and not out.exists()


@pytest.fixture
def png(tmp_path):
    from PIL import Image

    path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 8), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    "content, name, message",
    [
        (b"hello", "g.pt", "not a readable torch generator file"),
        (b"", "g.pkl", "the file is empty"),
        (b"\x08\x00\x00\x00\x00\x00\x00\x00[1,2,3]x", "g.safetensors", "not a readable native"),
    ],
)
def test_a_damaged_generator_file_exits_2_with_a_message(
    tmp_path, png, capsys, content, name, message
):
    weights = tmp_path / name
    weights.write_bytes(content)
    argv = ["upscale", str(png), "-o", str(tmp_path / "o.tif"), "--generator", str(weights)]
    assert cli.main([*argv, "--steps", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and name in err and "Traceback" not in err
    assert weights.read_bytes() == content


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--device", "xpu"], "does not run on device 'xpu'"),
        (["--device", "meta"], "does not run on device 'meta'"),
        (["--seed", str(2**70)], "seed must be an integer from 0"),
        (["--degradation", "psf", "--sigma", "inf"], "sigma > 0"),
        (["--sigma", "2"], "psf degradation only"),
    ],
)
def test_bad_settings_exit_2_with_a_message(tmp_path, png, capsys, extra, message):
    before = png.read_bytes()
    assert cli.main(["upscale", str(png), "-o", str(tmp_path / "o.tif"), *FAST, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert png.read_bytes() == before


def test_a_damaged_training_checkpoint_is_a_message_that_never_suggests_running_its_code(
    tmp_path, capsys
):
    out = tmp_path / "enc.safetensors"
    (tmp_path / "enc.ckpt.pt").write_bytes(b"\x80\x02not a checkpoint")
    argv = ["train-encoder", "--generator", "tiny", "--factor", "4", "--draw-steps", "2"]
    argv += ["--batch", "2", "--width", "8", "--hidden", "16", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot resume from" in err and "start afresh" in err
    assert "weights_only" not in err and "Traceback" not in err


def test_a_large_job_is_announced_once_before_it_starts(tmp_path, png, capsys, monkeypatch):
    from napari_pulse import estimate

    monkeypatch.setattr(estimate, "LARGE_UNITS", 1)
    assert cli.main(["upscale", str(png), "-o", str(tmp_path / "o.tif"), *FAST]) == 0
    err = capsys.readouterr().err
    assert err.count("large job: 1 tile; about") == 1 and "GiB of memory" in err
