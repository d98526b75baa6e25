"""Large outputs written to zarr a window at a time from blocks saved on disk
(:mod:`napari_pulse.streamed`), through the batch's worker tasks run in this process (no
cluster). Block sizes and the zarr window are made small so that small images are "large";
tiny random generators."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

import napari_pulse
from napari_pulse import blocks, streamed
from napari_pulse.bank import BankKey
from napari_pulse.batch import work
from napari_pulse.batch.inputs import Item
from napari_pulse.batch.run import _options, batch_key
from napari_pulse.blocks import Outcome

zarr = pytest.importorskip("zarr")
pytestmark = pytest.mark.usefixtures("one_thread")

KW = dict(generator="tiny", factor=4, steps=6, restarts=3)


@pytest.fixture
def small(monkeypatch):
    """Blocks of at most 10 units, 3 tiles a side; zarr windows of 16 high-res pixels."""
    monkeypatch.setattr(blocks, "BLOCK_UNITS", 10)
    monkeypatch.setattr(blocks, "BLOCK_TILES", 3)
    monkeypatch.setattr(streamed, "ZARR_CHUNK", 16)


def _u8(shape, seed=0):
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


def _spec(path, out, **kw):
    opts = _options(None, {**KW, **kw})
    item = Item(path, out)
    return work.Spec.of(item, opts, batch_key(item, opts))


def _run(spec, skip=()):
    """The batch's tasks for one input, in order, in this process (``skip``: blocks whose
    search is left out)."""
    started = work.start(spec)
    assert isinstance(started, work.Blocked)
    found = [work.search(spec, i) for i in started.todo if i not in skip]
    return started, work.finish(spec, *found) if not skip else None


@pytest.mark.parametrize(
    "shape, dtype, kw",
    [
        ((2, 36, 36), np.uint8, {"samples": 2}),  # a stack, several windows per plane
        ((36, 36, 3), np.uint8, {"samples": 2}),  # RGB on a grayscale generator
        ((36, 28, 1), np.uint8, {}),  # a trailing channel axis of 1
        ((46, 58), np.uint8, {"factor": 2, "samples": 3}),  # another factor and layout
        ((36, 36), np.uint16, {"samples": 2}),  # 16-bit microscopy
        ((36, 36), np.float64, {"samples": 2}),  # float64: a float64 spread
    ],
)
def test_a_large_output_equals_upscale_written_window_by_window(
    tmp_path, small, tiny_errors, shape, dtype, kw
):
    image = _u8(shape)
    if dtype == np.uint16:
        image = image.astype(np.uint16) * 200
    elif dtype == np.float64:
        image = image / 255.0
    path = tmp_path / "field.tif"
    tifffile.imwrite(path, image)
    (tmp_path / "out").mkdir()
    spec = _spec(path, tmp_path / "out", **kw)
    started, done = _run(spec)
    want = napari_pulse.upscale(image, **{**KW, **kw})
    assert started.blocks == want.params["blocks"] > 1
    group = zarr.open_group(str(tmp_path / "out" / "field.zarr"), mode="r")
    assert group["image"].chunks != group["image"].shape  # written in several windows
    assert sorted(group["image"].chunks)[-2:] == [16, 16]  # chunked in Y and X alike
    names = ("image", "samples", "std") if want.samples is not None else ("image",)
    names += ("error",) if kw.get("factor", 4) == 4 else ()  # the model is made for x4
    assert (want.error is not None) == ("error" in names) == ("error" in group)
    for name in names:
        got, exp = group[name][...], getattr(want, name)
        assert got.dtype == exp.dtype and np.array_equal(got, exp), name
    if want.samples is None:
        assert "samples" not in group and "std" not in group
    meta = group.attrs["napari_pulse"]
    assert meta["lr_psnr"] == want.lr_psnr and meta["success"] == want.success
    assert meta["sample_lr_psnr"] == pytest.approx(want.sample_lr_psnr, abs=1e-4)
    assert meta["blocks"] == want.params["blocks"] and meta["batch_key"] == spec.key
    assert done.lr_psnr == want.lr_psnr and done.success == want.success
    if want.error is not None:  # its RMS measured window by window, as a share of the range
        assert done.expected_error == pytest.approx(want.expected_rms()[1], rel=1e-6)
        assert meta["expected_error"] == pytest.approx(want.expected_rms()[1], rel=1e-6)
    else:
        assert done.expected_error is None and meta["expected_error"] is None
    assert not work.store_of(spec).folder.exists()  # the saved blocks go once written


def test_the_finish_never_holds_the_whole_output(tmp_path, small, monkeypatch):
    path = tmp_path / "field.tif"
    tifffile.imwrite(path, _u8((3, 36, 36)), photometric="minisblack")
    (tmp_path / "out").mkdir()
    spec = _spec(path, tmp_path / "out", samples=2)

    def refuse(*args, **kwargs):
        raise AssertionError("a canvas of the whole output was made")

    with monkeypatch.context() as m:
        m.setattr(blocks.Canvas, "__init__", refuse)
        _, done = _run(spec)
    assert done.blocks > 1
    want = napari_pulse.upscale(_u8((3, 36, 36)), **KW, samples=2)
    group = zarr.open_group(str(tmp_path / "out" / "field.zarr"), mode="r")
    assert np.array_equal(group["image"][...], want.image)


def test_a_rerun_searches_only_the_blocks_not_saved(tmp_path, small, monkeypatch):
    image = _u8((36, 36))
    path = tmp_path / "field.tif"
    tifffile.imwrite(path, image)
    (tmp_path / "out").mkdir()
    spec = _spec(path, tmp_path / "out")
    first, _ = _run(spec, skip={1, 2})  # as if the run had died before blocks 1 and 2
    assert not (tmp_path / "out" / "field.zarr").exists()
    again = work.start(spec)
    assert again.todo == (1, 2) and again.blocks == first.blocks
    searched = []
    real = work.pipeline.search_block
    monkeypatch.setattr(
        work.pipeline, "search_block", lambda s, w, b: searched.append(b) or real(s, w, b)
    )
    found = [work.search(spec, i) for i in again.todo]
    done = work.finish(spec, *found)
    # A finish run again after it wrote (its worker died before it said so) leaves it be.
    written = (tmp_path / "out" / "field.zarr").stat().st_ino
    assert work.finish(spec, *found).lr_psnr == done.lr_psnr
    assert (tmp_path / "out" / "field.zarr").stat().st_ino == written
    parts = work._prepare(spec)[5]
    assert searched == [parts[1], parts[2]]
    want = napari_pulse.upscale(image, **KW)
    group = zarr.open_group(str(tmp_path / "out" / "field.zarr"), mode="r")
    assert np.array_equal(group["image"][...], want.image)


def _outcome(bank: bool) -> Outcome:
    key = BankKey("abc", 1, (16, 16), "bicubic", 4, None, 64, 0)
    return Outcome(
        torch.rand(2, 1, 8, 8),
        torch.rand(4, 2),
        torch.rand(4),
        torch.arange(4),
        {"encoder": 3},
        torch.rand(64, 1, 4, 4) if bank else None,
        key if bank else None,
    )


def test_saved_blocks_come_back_as_they_were_and_only_for_their_key(tmp_path):
    store = streamed.OutcomeStore(tmp_path / "parts", "key-1").open()
    assert store.missing(3) == [0, 1, 2]
    kept = {0: _outcome(False), 2: _outcome(True)}
    for i, outcome in kept.items():
        store.save(i, outcome)
    assert store.done(3) == [0, 2] and store.missing(3) == [1]
    for i, outcome in kept.items():
        back = store.figures(i)
        for name in ("ood", "latent_mse", "passes"):
            assert torch.equal(getattr(back, name), getattr(outcome, name)), name
        assert back.at_eps == outcome.at_eps and back.bank_key == outcome.bank_key
        assert (back.bank is None) == (outcome.bank is None)
        assert np.array_equal(store.mosaics(i), outcome.mosaics.numpy())
    assert torch.equal(store.figures(2).bank, kept[2].bank)
    assert not [p for p in store.folder.iterdir() if p.name.endswith(".tmp")]
    # A block saved for other options into this folder (a task of an interrupted run
    # that was still running) is never counted; opening the folder for them empties it.
    streamed.OutcomeStore(tmp_path / "parts", "key-2").save(1, _outcome(False))
    assert store.missing(3) == [1]
    other = streamed.OutcomeStore(tmp_path / "parts", "key-2").open()
    assert other.missing(3) == [0, 1, 2]
    other.save(0, _outcome(False))
    assert streamed.OutcomeStore(tmp_path / "parts", "key-1").missing(1) == [0]


@pytest.mark.parametrize("damage", ["no second file", "cut short", "mosaics of another shape"])
def test_a_block_cut_short_counts_as_missing(tmp_path, damage):
    store = streamed.OutcomeStore(tmp_path / "parts", "k").open()
    store.save(0, _outcome(False))
    (npy,) = store.folder.glob("00000.*.npy")
    (npz,) = store.folder.glob("00000.*.npz")
    if damage == "no second file":  # died between its two files
        npz.unlink()
    elif damage == "cut short":  # a crash that left a file part-written
        npz.write_bytes(npz.read_bytes()[:40])
    else:
        np.save(npy, np.zeros((1, 1, 8, 8), np.float32))
    assert store.missing(1) == [0]
