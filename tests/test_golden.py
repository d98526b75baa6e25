"""Golden results of the search pipeline: fixed seeds, fixed inputs, recorded once.

For each case (tiny random generators; the face DCGAN where its weights are installed) the
recording holds the sequence of progress events (stage, done, total, batch, batches, worst
MSE), the output arrays and ``params``. A change of the code that must not change results
(a refactor) keeps them bit for bit on the machine kind they were recorded on (the torch
build, its CPU kernels and the CPU model). Elsewhere only the stages, the keys of
``params`` and the arrays made are compared, and the numbers are skipped with a note: on
another CPU model with the same kernels (an Intel Xeon against the AMD EPYC of an earlier
recording) the optimisation amplifies differences in the last bits of rounding to 1e-3
to 1e-1 in the images.

The recording was made before the search became a pipeline of stages; the pipeline gives
the same images, figures and ``params`` bit for bit (less the four settings it removed),
and two more progress events, so it was recorded again: a latent search stage that runs
after another (the full search after the quick wave) announces itself with an event at
its start, and the feature search reports the step at which its last unit settles.

It was recorded again when encoder starts became the default: the cases without an
encoder (the tiny generators; the face DCGAN with ``encoder=False``) kept their images bit
for bit, ``params`` gained the passes per tile, the tiles at eps after each rung, the
encoder used and the new search settings, and one case's events changed with the batch
width (64 images on a CPU, was 128); the encoder case (``nuclei-encoder``) is
new and depends on the bundled nuclei encoder.

It was recorded again when every tile's random starts came to be drawn from a stream of
its own (the seed and the tile's index) rather than from one stream for the whole image,
so that memory no longer grows with tiles x restarts: every case's images changed, as a
new seed would change them; ``params`` gained the generator's file and weights' hash;
the spread of samples is computed in float64; progress events number the search's batches
over all its rungs (a chunk of tiles at a time) instead of per rung. ``params`` then
gained ``blocks`` (1 for all these cases: images this small run whole).

It was recorded again when an image of several tiles came to be searched over a border
of reflected pixels that no loss reads (``tiling.border``: the generator's own edge falls
outside the output) with tiles overlapping by 3/16 of a tile (was a quarter): the cases of
one tile kept their images bit for bit; the others changed, and their grids with them;
``params["tiles"]`` gained ``border``.

It was recorded again when the StyleGAN2 activations became channels-last (``nuclei-encoder``
changed in the last bits of its floats; the tiny generators and the face DCGAN did not),
and again when ``Result.std`` became the samples' variance pooled over half a low-res
pixel (``result.SPREAD_SIGMA``): only the ``std`` arrays of the cases with several samples
changed. ``params["search"]`` then gained the retry rung's settings (``retry_starts``,
``retry_steps``, ``retry_spread``), and the encoder case's events the retry rung's share
of the progress total (it had no tile to retry). It was recorded again when a search
stage after another came to count, in the progress total, only the tiles still above eps
as it starts (``job.plan_at``; nothing before that): only the events' ``total`` (and, for
``nuclei-encoder``, whose retry and blind search had no tile, ``done``) changed in the
``quick``, ``quick-guide`` and ``nuclei-encoder`` cases; images, figures and ``params``
kept bit for bit. It was recorded again when results gained the expected-error map
(``Result.error``, :mod:`napari_pulse.error_map`): ``params`` gained ``error_map`` (None
but for ``nuclei-encoder``, which depends on the bundled nuclei error model too), and that
case gained its ``error`` array; every other array kept bit for bit.

It was recorded again on another CPU model (an Intel Xeon; the earlier recordings were
made on an AMD EPYC, where the numbers of every case differ in their last bits), when the
face DCGAN gained encoders at x4 and x8 with a rung budget in their cards: the new case
``faces-encoder`` (x8) starts from the bundled x8 face encoder, whose budget (800 steps,
patience 100) is capped by the case's 30 steps; ``params["search"]`` holds None for the
encoder rung's settings where the user set none, and the budget that ran where an encoder
ran.

It was recorded again on an AMD EPYC (Zen 2, AVX2, float32 passes) when the StyleGAN2
layers' elementwise arithmetic was fused (``bench/fused_layers.py``): the same formula,
with rounding that differs in the last bits, which the search amplifies in the numbers.
The stages, ``params`` keys and arrays stayed the same.

The inputs are stored with the recording, so nothing here depends on how they were made.
Record again (only when a change of results is intended and said so in its commit) with::

    python tests/test_golden.py --record
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import napari_pulse
from napari_pulse import bank, guide, render
from napari_pulse.generators import dcgan
from napari_pulse.intermediate import IntermediateConfig
from napari_pulse.search import SearchConfig

HERE = Path(__file__).parent / "golden"
JSON, ARRAYS = HERE / "pipeline.json", HERE / "pipeline.npz"
#: Guide fitting steps for these cases (a few events instead of 100).
GUIDE_STEPS = 60
#: ``params`` keys whose values legitimately differ between checkouts and machines.
VOLATILE = ("napari_pulse", "torch", "device", "generator_file")

SMALL = dict(steps=40, restarts=8, seed=3, config=SearchConfig(explore_steps=10))
#: The same without encoder starts (the search from blind starts, where an encoder exists).
BLIND = {**SMALL, "config": SearchConfig(explore_steps=10, encoder=False)}


def _inputs() -> dict[str, np.ndarray]:
    """The inputs of every case (made once, at recording time)."""
    from napari_pulse.degrade import Degradation
    from napari_pulse.generators.tiny import TinyGenerator
    from napari_pulse.render import Renderer

    rng = np.random.default_rng(2026)
    one = rng.random((8, 8)).astype(np.float32)
    one[2:6, 2:6] += 0.5
    many = rng.random((14, 14)).astype(np.float32)
    many[3:11, 4:12] += 0.6
    gen = TinyGenerator(resolution=32)
    z, noise = bank.gather(gen, torch.tensor([[17]]), 3, torch.device("cpu"))
    with torch.no_grad():
        render, degrade = Renderer(gen, 1, gen.resolution), Degradation("bicubic", 4)
        drawn = degrade(render(z[0], [n[0] for n in noise] or None))[0, 0].numpy()
    face = np.clip(np.random.default_rng(7).random((8, 8, 3)) * 0.6 + 0.2, 0, 1)
    return {
        "one": one / one.max(),
        "many": many / many.max(),
        "rgb": rng.random((10, 10, 3)).astype(np.float32),
        "stack": np.stack([drawn, rng.random((8, 8)).astype(np.float32)]),
        "face": face.astype(np.float32),
        "nuclei": _nuclei_field(),
    }


def _nuclei_field() -> np.ndarray:
    """A 28x28 low-res field (2x2 tiles at x4) of blobs on a dark background, uint8."""
    yy, xx = np.mgrid[0:28, 0:28]
    field = np.zeros((28, 28))
    for cy, cx, r in ((8, 9, 5), (19, 20, 4), (21, 6, 3)):
        field += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
    return np.clip(np.rint(field / field.max() * 230 + 8), 0, 255).astype(np.uint8)


#: name -> (input, upscale keywords, needs the face DCGAN)
CASES: dict[str, tuple[str, dict[str, Any], bool]] = {
    "default-one-tile": ("one", dict(generator="tiny", factor=4, samples=2, **SMALL), False),
    "default-multi-tile": ("many", dict(generator="tiny", factor=4, samples=2, **SMALL), False),
    "rgb-on-grayscale": ("rgb", dict(generator="tiny", factor=4, **SMALL), False),
    "grayscale-on-rgb": ("one", dict(generator="tiny-rgb", factor=4, **SMALL), False),
    "bank": (
        "many",
        dict(generator="tiny", factor=4, samples=2, **{**SMALL, "config": SearchConfig(bank=256)}),
        False,
    ),
    "quick": (
        "stack",
        dict(
            generator="tiny",
            factor=4,
            normalization="range",
            **{**SMALL, "config": SearchConfig(bank=256, quick=True)},
        ),
        False,
    ),  # fmt: skip
    "guide": (
        "many",
        dict(
            generator="tiny",
            factor=4,
            samples=2,
            **{**SMALL, "config": SearchConfig(bank=256, guide=True)},
        ),
        False,
    ),  # fmt: skip
    "quick-guide": (
        "stack",
        dict(
            generator="tiny",
            factor=4,
            normalization="range",
            **{**SMALL, "config": SearchConfig(bank=256, quick=True, guide=True)},
        ),
        False,
    ),  # fmt: skip
    "intermediate": (
        "many",
        dict(
            generator="tiny",
            factor=4,
            samples=2,
            mode="intermediate",
            intermediate=IntermediateConfig(steps=15),
            **SMALL,
        ),
        False,
    ),  # fmt: skip
    "faces-default": (
        "face",
        dict(generator="faces-dcgan64", factor=8, samples=2, **{**BLIND, "steps": 30}),
        True,
    ),
    "faces-bank": (
        "face",
        dict(
            generator="faces-dcgan64",
            factor=8,
            **{**SMALL, "steps": 30, "config": SearchConfig(bank=256, encoder=False)},
        ),
        True,
    ),  # fmt: skip
    "nuclei-encoder": ("nuclei", dict(generator="nuclei", factor=4, samples=2, **SMALL), False),
    "faces-encoder": (
        "face",
        dict(generator="faces-dcgan64", factor=8, samples=2, **{**SMALL, "steps": 30}),
        True,
    ),
}


def _platform() -> str:
    """Where results are bit for bit the same: the torch build, its CPU kernels and the
    CPU model (two CPUs with the same kernels can still round differently)."""
    return f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, {_cpu()}"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _plain(x: Any) -> Any:
    """``params`` as JSON would hold them (tuples as lists)."""
    return json.loads(json.dumps(x, default=lambda v: v.tolist() if hasattr(v, "tolist") else v))


def run_case(name: str, image: np.ndarray, cache: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """One case in a fresh cache, on one thread: its events and params, and its arrays."""
    _, kwargs, _ = CASES[name]
    events: list = []
    before, steps = torch.get_num_threads(), guide.STEPS
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NAPARI_PULSE_CACHE", str(cache))
        bank.CACHE.clear()
        guide.CACHE.clear()
        guide.STEPS = GUIDE_STEPS
        torch.set_num_threads(1)
        try:
            r = napari_pulse.upscale(image, progress=events.append, **kwargs)
        finally:
            torch.set_num_threads(before)
            guide.STEPS = steps
            bank.CACHE.clear()
            guide.CACHE.clear()
    record = {
        "events": [[e.stage, e.done, e.total, e.batch, e.batches, e.best_mse] for e in events],
        "params": _plain({k: v for k, v in r.params.items() if k not in VOLATILE}),
        "figures": _plain(
            {
                "lr_psnr": r.lr_psnr,
                "success": r.success,
                "ood_score": r.ood_score,
                "atypicality": r.atypicality,
                "sample_lr_psnr": r.sample_lr_psnr,
            }
        ),
    }
    arrays = {"image": r.image, "lr_psnr_tiles": r.lr_psnr_tiles}
    for key in ("samples", "std", "ood_tiles", "atypical_tiles", "error"):
        value = getattr(r, key)
        if value is not None:
            arrays[key] = value
    return record, arrays


def _faces_ok() -> bool:
    return dcgan.faces_weights_path() is not None


@pytest.fixture(scope="module", autouse=True)
def float32_passes():
    """The recording holds float32 passes, whatever the CPU (``precision="auto"`` picks
    bfloat16 where the CPU computes it natively; ``test_precision.py`` covers that)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(render, "native_bfloat16", lambda device: False)
        yield


@pytest.fixture(scope="module")
def recorded() -> tuple[dict, Any]:
    if not JSON.is_file():
        pytest.fail(f"no golden recording at {JSON}; run python tests/test_golden.py --record")
    return json.loads(JSON.read_text()), np.load(ARRAYS)


@pytest.mark.parametrize("name", list(CASES))
def test_the_pipeline_gives_the_recorded_results(name, recorded, tmp_path):
    meta, arrays = recorded
    if CASES[name][2] and not _faces_ok():
        pytest.skip("gan-face-generate not installed")
    if name not in meta["cases"]:
        pytest.skip(f"{name} was not recorded (the face weights were missing then)")
    want = meta["cases"][name]
    got, out = run_case(name, arrays[f"input/{CASES[name][0]}"], tmp_path)
    names = sorted(k.split("/", 1)[1] for k in arrays.files if k.startswith(f"{name}/"))
    ev_want, ev_got = want["events"], got["events"]
    params, got_params = want["params"], got["params"]
    # what holds on any machine: the stages in order, the keys of params, the arrays made
    assert _stages(ev_got) == _stages(ev_want), "the stages differ"
    assert got_params.keys() == params.keys()
    assert sorted(out) == names
    for key in names:
        assert out[key].dtype == arrays[f"{name}/{key}"].dtype, key
    if meta["platform"] != _platform():
        # an optimisation amplifies the last bits of rounding, which differ from one CPU to
        # another: its numbers are compared only where they were recorded
        pytest.skip(f"numbers recorded on {meta['platform']}, not here ({_platform()})")
    assert ev_got == ev_want, "progress events differ"
    for key in params:
        assert got_params[key] == params[key], key
    for key, value in want["figures"].items():
        if isinstance(value, float | list):
            np.testing.assert_array_equal(
                np.array(got["figures"][key], float), np.array(value, float)
            )
        else:
            assert got["figures"][key] == value, key
    for key in names:
        np.testing.assert_array_equal(out[key], arrays[f"{name}/{key}"], err_msg=key)


def _stages(events: list) -> list[str]:
    """The stages of a recording's events, in order, each once."""
    return [e[0] for i, e in enumerate(events) if i == 0 or e[0] != events[i - 1][0]]


def record() -> None:
    """Run every case and write the recording (the face cases only with the weights), with
    float32 passes (see :func:`float32_passes`)."""
    import tempfile

    render.native_bfloat16 = lambda device: False

    HERE.mkdir(exist_ok=True)
    inputs = _inputs()
    cases, arrays = {}, {f"input/{k}": v for k, v in inputs.items()}
    for name, (source, _, faces) in CASES.items():
        if faces and not _faces_ok():
            print(f"{name}: skipped (gan-face-generate not installed)")
            continue
        with tempfile.TemporaryDirectory() as cache:
            rec, out = run_case(name, inputs[source], Path(cache))
        cases[name] = rec
        arrays.update({f"{name}/{k}": v for k, v in out.items()})
        print(f"{name}: {len(rec['events'])} events, lr_psnr {rec['figures']['lr_psnr']:.2f} dB")
    JSON.write_text(json.dumps({"platform": _platform(), "cases": cases}, indent=1) + "\n")
    np.savez_compressed(ARRAYS, **arrays)


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        raise SystemExit(__doc__)
    record()
