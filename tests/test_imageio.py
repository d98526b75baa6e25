"""Reading TIFF/PNG/JPEG inputs and writing TIFF results with JSON metadata."""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_pulse import imageio
from napari_pulse.imageio import read_image, read_tiff_metadata, write_tiff_atomic

RNG = np.random.default_rng(0)
GRAY8 = RNG.integers(0, 256, (9, 7), dtype=np.uint8)
RGB8 = RNG.integers(0, 256, (9, 7, 3), dtype=np.uint8)
GRAY16 = RNG.integers(0, 65536, (9, 7), dtype=np.uint16)
RGB16 = RNG.integers(0, 65536, (9, 7, 3), dtype=np.uint16)


def _png(path, rows: np.ndarray, width: int, color_type: int, depth: int) -> None:
    """A minimal PNG written by hand, for formats Pillow cannot write (16-bit RGB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    dtype = ">u2" if depth == 16 else "u1"
    raw = b"".join(b"\x00" + row.astype(dtype).tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, len(rows), depth, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("array", [GRAY8, RGB8, GRAY16], ids=["gray8", "rgb8", "gray16"])
def test_png_round_trip(tmp_path, array):
    path = tmp_path / "in.png"
    Image.fromarray(array).save(path)
    out = read_image(path)
    assert out.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize(
    "array", [GRAY8, RGB8, GRAY16, RGB16], ids=["gray8", "rgb8", "gray16", "rgb16"]
)
def test_tiff_round_trip(tmp_path, array):
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, array, photometric="rgb" if array.ndim == 3 else "minisblack")
    out = read_image(path)
    assert out.dtype == array.dtype
    np.testing.assert_array_equal(out, array)


def test_big_endian_tiff_comes_back_native(tmp_path):
    path = tmp_path / "be.tiff"
    tifffile.imwrite(path, GRAY16, byteorder=">")
    out = read_image(path)
    assert out.dtype == np.dtype(np.uint16) and out.dtype.isnative
    np.testing.assert_array_equal(out, GRAY16)


def test_jpeg_reads_as_uint8_rgb(tmp_path):
    path = tmp_path / "in.JPG"  # suffix matching is case-insensitive
    smooth = np.repeat(np.linspace(0, 255, 16, dtype=np.uint8)[None, :, None], 12, 0).repeat(3, 2)
    Image.fromarray(smooth).save(path, quality=95)
    out = read_image(path)
    assert out.shape == (12, 16, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - smooth).max() < 12  # lossy, but close


def test_palette_png_becomes_rgb(tmp_path):
    path = tmp_path / "pal.png"
    idx = RNG.integers(0, 3, (5, 6), dtype=np.uint8)
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255]
    im = Image.fromarray(idx, mode="P")
    im.putpalette(palette)
    im.save(path)
    out = read_image(path)
    assert out.shape == (5, 6, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.array(palette, np.uint8).reshape(3, 3)[idx])


def test_opaque_rgba_png_drops_alpha(tmp_path):
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([RGB8, np.full(RGB8.shape[:2], 255, np.uint8)])).save(path)
    np.testing.assert_array_equal(read_image(path), RGB8)


def test_transparent_rgba_png_is_refused(tmp_path):
    path = tmp_path / "rgba.png"
    alpha = np.full(RGB8.shape[:2], 255, np.uint8)
    alpha[0, 0] = 10
    Image.fromarray(np.dstack([RGB8, alpha])).save(path)
    with pytest.raises(ValueError, match="transparent"):
        read_image(path)


def test_opaque_rgba_tiff_drops_alpha(tmp_path):
    path = tmp_path / "rgba.tif"
    rgba = np.dstack([RGB16, np.full(RGB16.shape[:2], 65535, np.uint16)])
    tifffile.imwrite(path, rgba, photometric="rgb", extrasamples=["unassalpha"])
    np.testing.assert_array_equal(read_image(path), RGB16)


def test_16bit_rgb_png_is_refused_not_truncated(tmp_path):
    path = tmp_path / "rgb16.png"
    _png(path, RGB16.reshape(9, -1), width=7, color_type=2, depth=16)
    with pytest.raises(ValueError, match="16-bit"):
        read_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_image(tmp_path / "nope.png")


def test_unknown_suffix(tmp_path):
    path = tmp_path / "in.bmp"
    Image.fromarray(GRAY8).save(path)
    with pytest.raises(ValueError, match="unknown suffix"):
        read_image(path)


@pytest.mark.parametrize("name", ["bad.png", "bad.tif"])
def test_corrupt_file_gives_value_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="could not read"):
        read_image(path)


METADATA = {
    "factor": 4,
    "lr_psnr": 31.25,
    "inf": math.inf,
    "success": False,
    "sigma": None,
    "normalization": {"mode": "range", "lo": 0.0, "hi": 65535.0},
    "tiles": [3, 3],
    "shape": [1, 2],  # must not confuse tifffile's own shaped description
    "input": '/data/ünïcode "quoted" path.png',
}


@pytest.mark.parametrize(
    "array",
    [GRAY16, RGB8, np.zeros((2, 3, 5, 4), np.float32), np.zeros((2, 5, 4, 3), np.uint8)],
    ids=["gray16", "rgb8", "4d-float", "rgb-stack"],
)
def test_tiff_metadata_round_trip(tmp_path, array):
    path = tmp_path / "out.tif"
    write_tiff_atomic(path, array, METADATA)
    assert read_tiff_metadata(path) == METADATA
    back = tifffile.imread(path)
    assert back.shape == array.shape and back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)
    with tifffile.TiffFile(path) as tif:
        rgb = array.shape[-1] == 3
        assert tif.pages[0].photometric == (
            tifffile.PHOTOMETRIC.RGB if rgb else tifffile.PHOTOMETRIC.MINISBLACK
        )
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]  # no temporary left


def test_write_replaces_existing_file(tmp_path):
    path = tmp_path / "out.tiff"
    write_tiff_atomic(path, GRAY8, {"v": 1})
    write_tiff_atomic(path, GRAY16, {"v": 2})
    assert read_tiff_metadata(path) == {"v": 2}
    np.testing.assert_array_equal(read_image(path), GRAY16)


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_leaves_old_file_and_no_temporary(tmp_path, monkeypatch, error):
    path = tmp_path / "out.tif"
    write_tiff_atomic(path, GRAY8, {"v": 1})
    before = path.read_bytes()

    def broken(fh, *args, **kwargs):
        fh.write(b"II*\x00 half a tiff")
        raise error

    monkeypatch.setattr(imageio.tifffile, "imwrite", broken)
    with pytest.raises(type(error)):
        write_tiff_atomic(path, GRAY16, {"v": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_write_needs_tiff_suffix_and_existing_folder(tmp_path):
    with pytest.raises(ValueError, match=".tif"):
        write_tiff_atomic(tmp_path / "out.png", GRAY8, {})
    with pytest.raises(FileNotFoundError, match="folder"):
        write_tiff_atomic(tmp_path / "missing" / "out.tif", GRAY8, {})


def test_read_metadata_of_foreign_tiff(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, GRAY8, description="hello", metadata=None)
    with pytest.raises(ValueError, match="no napari-pulse"):
        read_tiff_metadata(path)
