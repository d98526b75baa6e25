"""Batches on Dask: a local cluster of 2 worker processes (loopback only), tiny random
generators. Outputs must equal ``upscale`` on the same input bit for bit; a killed worker, a
corrupt file and an interrupted batch must lose nothing."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

import napari_pulse
from napari_pulse import blocks
from napari_pulse.batch import REPORT_NAME, batch
from napari_pulse.batch.inputs import expand, plan_items, read
from napari_pulse.cli import main
from napari_pulse.generators import load
from napari_pulse.imageio import read_image, read_tiff_metadata

pytestmark = pytest.mark.usefixtures("one_thread")

KW = dict(generator="tiny", factor=4, steps=6, restarts=3)


@pytest.fixture(scope="module")
def client():
    """A local cluster of 2 worker processes with one torch thread each."""
    distributed = pytest.importorskip("distributed")
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.CRITICAL,
        env=env,
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _u8(shape, seed):
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


def _files(folder: Path, n: int = 3, shape=(24, 24)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"field{i}.tif"
        tifffile.imwrite(path, _u8(shape, i))
        paths.append(path)
    return paths


def _bytes(paths):
    return {p: p.read_bytes() for p in paths}


def test_files_and_a_stack_equal_upscale_bit_for_bit(client, tmp_path):
    paths = _files(tmp_path / "in", 2)
    stack = tmp_path / "in" / "timelapse.tif"
    tifffile.imwrite(stack, _u8((3, 20, 20), 7), photometric="minisblack")
    png = tmp_path / "in" / "rgb.png"
    Image.fromarray(_u8((16, 16, 3), 8)).save(png)
    inputs = [*paths, stack, png]
    before = _bytes(inputs)
    report = batch([tmp_path / "in"], tmp_path / "out", client=client, **KW)
    assert report.ok and report.count("done") == 4
    for path in inputs:
        want = napari_pulse.upscale(read_image(path), **KW)
        out = tmp_path / "out" / f"{path.stem}.tif"
        got = tifffile.imread(out)
        assert got.dtype == want.image.dtype and np.array_equal(got, want.image), path.name
        meta = read_tiff_metadata(out)
        assert meta["lr_psnr"] == pytest.approx(want.lr_psnr) and meta["seed"] == 0
        assert meta["input"] == str(path.resolve()) and meta["batch_key"]
    assert _bytes(inputs) == before  # inputs never modified
    saved = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    assert [e["status"] for e in saved["inputs"]] == ["done"] * 4
    assert {e["planes"] for e in saved["inputs"]} == {1, 3}
    assert all(e["seconds"] > 0 and e["lr_psnr"] is not None for e in saved["inputs"])


def test_samples_write_the_companions_upscale_writes(client, tmp_path):
    (path,) = _files(tmp_path / "in", 1)
    kw = {**KW, "samples": 2}
    assert batch([path], tmp_path / "out", client=client, **kw).ok
    want = napari_pulse.upscale(read_image(path), **kw)
    out = tmp_path / "out"
    assert np.array_equal(tifffile.imread(out / "field0.tif"), want.image)
    assert np.array_equal(tifffile.imread(out / "field0_samples.tif"), want.samples)
    assert np.array_equal(tifffile.imread(out / "field0_std.tif"), want.std)
    assert read_tiff_metadata(out / "field0_std.tif")["content"] == "std"


def test_a_corrupt_file_is_reported_and_the_others_written(client, tmp_path):
    paths = _files(tmp_path / "in", 2)
    bad = tmp_path / "in" / "broken.tif"
    bad.write_bytes(b"not a tiff at all")
    seen, written = [], []

    def watch(event):  # the report on disk follows the batch as inputs end
        seen.append(event)
        if event.status is not None:
            saved = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
            written.append({e["input"]: e["status"] for e in saved["inputs"]}[event.input])

    report = batch([tmp_path / "in"], tmp_path / "out", client=client, progress=watch, **KW)
    assert sorted(written) == ["done", "done", "failed"]
    assert not report.ok and report.count("done") == 2
    (failed,) = report.failed
    assert failed.input == str(bad) and "could not read" in failed.error
    assert [e.input for e in seen if e.status == "failed"] == [str(bad)]
    for path in paths:
        assert (tmp_path / "out" / f"{path.stem}.tif").exists()
    assert not (tmp_path / "out" / "broken.tif").exists()
    assert bad.read_bytes() == b"not a tiff at all"
    saved = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    statuses = {Path(e["input"]).name: e["status"] for e in saved["inputs"]}
    assert statuses == {"broken.tif": "failed", "field0.tif": "done", "field1.tif": "done"}


def _until_idle(client, timeout: float = 60.0) -> None:
    """Wait until no worker of ``client`` runs a task (cancelled ones run on to their end)."""
    deadline = time.monotonic() + timeout
    while sum(client.run(lambda dask_worker: len(dask_worker.state.executing)).values()):
        assert time.monotonic() < deadline, "the workers are still busy"
        time.sleep(0.05)


def test_a_rerun_after_an_interrupted_batch_does_only_what_was_missing(client, tmp_path):
    # The first input is small and the others larger, so that when the first is done and
    # the batch is interrupted, at most two others (one per worker) are still running.
    paths = _files(tmp_path / "in", 1) + _files(tmp_path / "big", 4, shape=(64, 64))[1:]
    out = tmp_path / "out"

    def interrupt(event):
        if event.status == "done":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        batch(paths, out, client=client, progress=interrupt, **KW)
    _until_idle(client)  # a task already running when interrupted still writes its output
    saved = json.loads((out / REPORT_NAME).read_text())
    assert saved["interrupted"] and "pending" in {e["status"] for e in saved["inputs"]}
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    existing = {p: p.stat().st_mtime_ns for p in out.glob("*.tif")}
    assert 1 <= len(existing) < 4
    report = batch(paths, out, client=client, **KW)
    assert report.ok
    assert report.count("skipped") == len(existing) and report.count("done") == 4 - len(existing)
    assert {p: p.stat().st_mtime_ns for p in existing} == existing  # left as they were
    for path in paths:
        want = napari_pulse.upscale(read_image(path), **KW).image
        assert np.array_equal(tifffile.imread(out / f"{path.stem}.tif"), want)


def test_outputs_from_other_options_are_kept_unless_overwrite(client, tmp_path):
    (path,) = _files(tmp_path / "in", 1)
    out = tmp_path / "out"
    assert batch([path], out, client=client, **KW).ok
    first = (out / "field0.tif").read_bytes()
    report = batch([path], out, client=client, **{**KW, "seed": 5})
    assert not report.ok and "exists" in report.failed[0].error
    assert (out / "field0.tif").read_bytes() == first
    assert batch([path], out, client=client, overwrite=True, **{**KW, "seed": 5}).ok
    want = napari_pulse.upscale(read_image(path), **{**KW, "seed": 5}).image
    assert np.array_equal(tifffile.imread(out / "field0.tif"), want)


def test_a_killed_worker_has_its_task_run_again(client, tmp_path):
    paths = _files(tmp_path / "in", 4, shape=(32, 32))
    kw = {**KW, "steps": 12, "restarts": 4}
    killed = []

    def kill_a_busy_worker(event):
        if killed or event.status != "done":
            return
        busy = [addr for addr, keys in client.processing().items() if keys]
        if busy:
            pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    report = batch(paths, tmp_path / "out", client=client, progress=kill_a_busy_worker, **kw)
    assert killed, "no task was running when the first one finished"
    assert report.ok and report.count("done") == 4
    for path in paths:
        want = napari_pulse.upscale(read_image(path), **kw).image
        assert np.array_equal(tifffile.imread(tmp_path / "out" / f"{path.stem}.tif"), want)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next tests


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of at most 10 units, 3 tiles a side: small images run in blocks."""
    monkeypatch.setattr(blocks, "BLOCK_UNITS", 10)
    monkeypatch.setattr(blocks, "BLOCK_TILES", 3)


def test_a_zarr_input_larger_than_a_block_comes_back_as_zarr_equal_to_upscale(
    client, tmp_path, small_blocks
):
    zarr = pytest.importorskip("zarr")
    image = _u8((2, 40, 40), 3)
    source = tmp_path / "stack.zarr"
    z = zarr.open_array(str(source), mode="w", shape=image.shape, chunks=(1, 16, 16), dtype="u1")
    z[...] = image
    seen = []
    report = batch([source], tmp_path / "out", client=client, progress=seen.append, **KW)
    assert report.ok
    want = napari_pulse.upscale(image, **KW)
    assert want.params["blocks"] > 1
    group = zarr.open_group(str(tmp_path / "out" / "stack.zarr"), mode="r")
    assert np.array_equal(group["image"][...], want.image)
    meta = group.attrs["napari_pulse"]
    assert meta["blocks"] == want.params["blocks"] == report.entries[str(source)].blocks
    assert meta["lr_psnr"] == pytest.approx(want.lr_psnr)
    assert seen[-1].total == want.params["blocks"] + 2  # start, the blocks, finish
    assert np.array_equal(z[...], image)


def test_a_large_tiff_runs_in_blocks_and_goes_to_zarr(client, tmp_path, small_blocks):
    zarr = pytest.importorskip("zarr")
    (path,) = _files(tmp_path / "in", 1, shape=(36, 36))
    report = batch([path], tmp_path / "out", client=client, **{**KW, "samples": 2})
    assert report.ok and report.entries[str(path)].blocks > 1
    want = napari_pulse.upscale(read_image(path), **{**KW, "samples": 2})
    group = zarr.open_group(str(tmp_path / "out" / "field0.zarr"), mode="r")
    for name in ("image", "samples", "std"):
        assert np.array_equal(group[name][...], getattr(want, name)), name


def test_an_interrupted_large_input_resumes_from_its_saved_blocks(client, tmp_path, small_blocks):
    zarr = pytest.importorskip("zarr")
    (path,) = _files(tmp_path / "in", 1, shape=(48, 48))
    out = tmp_path / "out"

    def interrupt(event):
        if event.done >= 3:  # the input's start and two of its blocks
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        batch([path], out, client=client, progress=interrupt, **KW)
    _until_idle(client)  # blocks already running when interrupted are still saved
    assert not (out / "field0.zarr").exists()
    seen = []
    report = batch([path], out, client=client, progress=seen.append, **KW)
    entry = report.entries[str(path)]
    assert report.ok and entry.blocks > 3 and entry.blocks_saved >= 2
    assert seen[-1].total == 1 + (entry.blocks - entry.blocks_saved) + 1
    said = [e.message for e in seen if "saved by an earlier run" in e.message]
    assert said == [
        f"{path}: {entry.blocks_saved} of {entry.blocks} blocks saved by an "
        f"earlier run, {entry.blocks - entry.blocks_saved} to search"
    ]
    want = napari_pulse.upscale(read_image(path), **KW)
    group = zarr.open_group(str(out / "field0.zarr"), mode="r")
    assert np.array_equal(group["image"][...], want.image)
    assert not (out / ".field0.zarr.parts").exists()  # the saved blocks go once written
    saved = json.loads((out / REPORT_NAME).read_text())["inputs"][0]
    assert saved["blocks_saved"] == entry.blocks_saved


def test_ome_zarr_groups_are_read_at_full_resolution(tmp_path):
    zarr = pytest.importorskip("zarr")
    group = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    full, half = _u8((12, 12), 1), _u8((6, 6), 2)
    make = getattr(group, "create_array", None) or group.create_dataset  # zarr 3, zarr 2
    for name, array in (("0", full), ("1", half)):
        make(name, shape=array.shape, dtype=array.dtype)[...] = array
    group.attrs["multiscales"] = [{"datasets": [{"path": "0"}, {"path": "1"}]}]
    assert np.array_equal(read(tmp_path / "ome.zarr"), full)
    two = zarr.open_group(str(tmp_path / "two.zarr"), mode="w")
    make = getattr(two, "create_array", None) or two.create_dataset
    for name in ("a", "b"):
        make(name, shape=(4, 4), dtype="u1")
    with pytest.raises(ValueError, match="arrays"):
        read(tmp_path / "two.zarr")


def test_inputs_are_expanded_and_clashing_outputs_refused(tmp_path):
    paths = _files(tmp_path / "in", 2)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    assert expand([tmp_path / "in"]) == paths
    assert expand([str(tmp_path / "in" / "*.tif"), paths[0]]) == paths
    with pytest.raises(FileNotFoundError, match="not found"):
        expand([tmp_path / "missing.tif"])
    with pytest.raises(FileNotFoundError, match="no image matches"):
        expand([str(tmp_path / "in" / "*.png")])
    twin = tmp_path / "other" / "field0.tif"
    twin.parent.mkdir()
    tifffile.imwrite(twin, _u8((8, 8), 0))
    with pytest.raises(ValueError, match="would both write field0.tif"):
        plan_items([paths[0], twin], tmp_path / "out", ())
    with pytest.raises(ValueError, match="holds inputs"):
        plan_items(paths, tmp_path / "in", ())
    (tmp_path / "in" / ".field9.tif").write_bytes(b"macOS resource fork")
    assert expand([tmp_path / "in"]) == paths  # hidden files are not images
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        expand([tmp_path / "empty"])


def test_bad_options_fail_before_any_work(tmp_path):
    (path,) = _files(tmp_path / "in", 1)
    with pytest.raises(TypeError, match="by name or by a file"):
        batch([path], tmp_path / "out", generator=load("tiny"))
    with pytest.raises(ValueError, match="factor"):
        batch([path], tmp_path / "out", generator="tiny", factor=1)
    with pytest.raises(TypeError, match="unknown upscale option"):
        batch([path], tmp_path / "out", generator="tiny", stpes=3)
    assert not (tmp_path / "out").exists()


def test_the_command_runs_on_a_scheduler_address(client, tmp_path, monkeypatch, capsys):
    paths = _files(tmp_path / "in", 2)
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG but broken")
    monkeypatch.setenv("NAPARI_PULSE_SCHEDULER", client.scheduler.address)
    argv = ["batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--generator", "tiny"]
    argv += ["--steps", "6", "--restarts", "3"]
    assert main(argv) == 1
    err = capsys.readouterr()
    assert "failed:" in err.err and "broken.png" in err.err
    assert "2 done, 1 failed" in err.out and REPORT_NAME in err.out
    for path in paths:
        assert (tmp_path / "out" / f"{path.stem}.tif").exists()
    assert main(argv) == 1  # the good ones are skipped, the bad one fails again
    assert "2 skipped, 1 failed" in capsys.readouterr().out


def test_relative_paths_and_a_folder_named_like_the_generator(client, tmp_path, monkeypatch):
    _files(tmp_path / "in", 1)
    (tmp_path / "tiny").mkdir()  # a folder named like the generator does not shadow it
    monkeypatch.chdir(tmp_path)  # the workers' working directory stays where it was
    report = batch(["in"], "out", client=client, **KW)
    assert report.ok, report.failed
    assert (tmp_path / "out" / "field0.tif").exists()
    assert list(report.entries) == [str(tmp_path / "in" / "field0.tif")]


def test_companions_in_the_way_are_kept_and_same_outputs_skipped_even_with_overwrite(
    client, tmp_path
):
    (path,) = _files(tmp_path / "in", 1)
    other = tmp_path / "other" / "field0_std.tif"
    other.parent.mkdir()
    tifffile.imwrite(other, _u8((8, 8), 4))
    out = tmp_path / "out"
    assert batch([other], out, client=client, **KW).ok  # writes out/field0_std.tif
    theirs = (out / "field0_std.tif").read_bytes()
    kw = {**KW, "samples": 2}
    report = batch([path], out, client=client, **kw)
    assert not report.ok and "field0_std.tif exists" in report.failed[0].error
    assert (out / "field0_std.tif").read_bytes() == theirs
    assert batch([path], out, client=client, overwrite=True, **kw).ok
    stamp = (out / "field0.tif").stat().st_mtime_ns
    again = batch([path], out, client=client, overwrite=True, **kw)
    assert again.count("skipped") == 1 and (out / "field0.tif").stat().st_mtime_ns == stamp
    assert len(again.entries[str(path)].outputs) == 3


def test_leftovers_of_an_interrupted_write_are_removed_by_the_next_run(client, tmp_path):
    (path,) = _files(tmp_path / "in", 1)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".field0.tif.0123456789ab.tmp").write_bytes(b"half a file")
    (out / ".field0.zarr.0123456789ab.tmp").mkdir()
    assert batch([path], out, client=client, **KW).ok
    assert sorted(p.name for p in out.iterdir()) == [REPORT_NAME, "field0.tif"]


def test_the_key_follows_every_file_of_a_zarr_store(tmp_path):
    zarr = pytest.importorskip("zarr")
    from napari_pulse.batch.inputs import Item
    from napari_pulse.batch.run import _options, batch_key

    source = tmp_path / "s.zarr"
    z = zarr.open_array(str(source), mode="w", shape=(16, 16), chunks=(8, 8), dtype="u1")
    z[...] = _u8((16, 16), 0)
    item, opts = Item(source, tmp_path / "out"), _options(None, dict(KW))
    first = batch_key(item, opts)
    assert batch_key(item, opts) == first
    chunk = max((p for p in source.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    os.utime(chunk, ns=(chunk.stat().st_atime_ns, chunk.stat().st_mtime_ns + 10**9))
    assert batch_key(item, opts) != first
    assert batch_key(item, _options(None, {**KW, "seed": 1})) != batch_key(item, opts)


def test_a_gpu_run_starts_one_local_worker(tmp_path, monkeypatch):
    from napari_pulse.batch import run

    asked = []

    def connect(scheduler, workers):
        asked.append(workers)
        raise KeyboardInterrupt  # stop before any cluster starts

    monkeypatch.setattr(run, "connect", connect)
    monkeypatch.setattr(run, "pick_device", lambda device: torch.device("cuda"))
    (path,) = _files(tmp_path / "in", 1)
    with pytest.raises(KeyboardInterrupt):
        batch([path], tmp_path / "out", **KW)
    with pytest.raises(KeyboardInterrupt):
        batch([path], tmp_path / "out", workers=3, **KW)
    assert asked == [1, 3]


def test_a_stack_on_the_cluster_fills_in_plane_by_plane_and_equals_upscale(client, monkeypatch):
    from napari_pulse.batch import iter_stack
    from napari_pulse.events import Finished

    monkeypatch.setattr(blocks, "GROUP_UNITS", 1)  # one plane a group, shown as it finishes
    stack = _u8((4, 20, 20), 11)
    kw = {**KW, "samples": 2}
    shown, result = [], None
    for event in iter_stack(stack, client=client, poll=0.05, **kw):
        if isinstance(event, Finished):
            result = event.result
        else:
            assert event.stage == "planes" and event.batches == 4 and event.total == 4
            shown.append((event.batch, event.preview()))
    want = napari_pulse.upscale(stack, **kw)
    assert np.array_equal(result.image, want.image) and np.array_equal(result.samples, want.samples)
    assert result.lr_psnr == want.lr_psnr and result.params["blocks"] == 4
    counts = [groups for groups, _ in shown]
    assert counts == sorted(counts) and len(set(counts)) > 1  # planes came in one by one
    for groups, image in shown:  # every plane shown is final; the others are still blank
        painted = [p for p in range(4) if image[p].any()]
        assert len(painted) == groups
        for p in painted:
            assert np.array_equal(image[p], want.image[p])
    assert np.array_equal(shown[-1][1], want.image)
    assert _tasks_running(client) == 0  # nothing of the stack is left on the cluster


def _tasks_running(client) -> int:
    return sum(len(v) for v in client.processing().values())


def test_an_rgb_stack_on_a_grayscale_generator_equals_upscale_on_the_cluster(client):
    from napari_pulse.batch import iter_stack

    stack = _u8((2, 12, 12, 3), 12)  # each colour channel is a plane of the search
    *events, last = list(iter_stack(stack, client=client, poll=0.05, **KW))
    want = napari_pulse.upscale(stack, **KW)
    assert last.result.image.shape == (2, 48, 48, 3)
    assert np.array_equal(last.result.image, want.image)
    assert np.array_equal(events[-1].preview(), want.image)


def test_one_plane_on_the_cluster_is_one_task_and_closing_the_stream_cancels(client):
    from napari_pulse.batch import iter_stack

    plane = _u8((20, 20), 13)
    *events, last = list(iter_stack(plane, client=client, poll=0.05, **KW))
    want = napari_pulse.upscale(plane, **KW)
    assert np.array_equal(last.result.image, want.image) and last.result.params["blocks"] == 1
    assert {(e.total, e.batches) for e in events} == {(1, 1)}
    assert np.array_equal(events[-1].preview(), want.image)
    stream = iter_stack(_u8((3, 20, 20), 14), client=client, poll=0.05, **{**KW, "steps": 300})
    next(stream)
    assert _tasks_running(client) + len(client.who_has()) > 0  # the work is out there
    stream.close()
    deadline = time.monotonic() + 10
    while _tasks_running(client) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _tasks_running(client) == 0


def test_foreign_inputs_are_reported_and_named_and_a_rerun_keeps_the_verdict(
    client, tmp_path, monkeypatch, capsys
):
    from conftest import blob_model
    from napari_pulse import domain

    # A domain model of made-up blob tiles for the tiny generator, where the workers look.
    model = (
        Path(os.environ["NAPARI_PULSE_CACHE"]) / "encoders" / domain.file_name("tiny", 4, "bicubic")
    )
    model.parent.mkdir(parents=True, exist_ok=True)
    domain.save(model, blob_model())
    try:
        paths = _files(tmp_path / "in", 2)  # random pixels: foreign to blobs
        monkeypatch.setenv("NAPARI_PULSE_SCHEDULER", client.scheduler.address)
        argv = ["batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--generator", "tiny"]
        argv += ["--steps", "6", "--restarts", "3"]
        assert main(argv) == 0
        err = capsys.readouterr().err
        assert "2 input(s) look unlike the generator's training images" in err
        assert all(p.name in err for p in paths)
        entries = json.loads((tmp_path / "out" / REPORT_NAME).read_text())["inputs"]
        assert [e["in_domain"] for e in entries] == [False, False]
        assert main(argv) == 0  # skipped: the verdict comes back from the outputs' metadata
        assert "2 input(s) look unlike" in capsys.readouterr().err
    finally:
        model.unlink()
