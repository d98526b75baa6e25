"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch


def drain(events, ticks: list | None = None):
    """Run a generator to its end (collecting what it yields into ``ticks``, when given)
    and return what it returns."""
    while True:
        try:
            item = next(events)
        except StopIteration as stop:
            return stop.value
        if ticks is not None:
            ticks.append(item)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Keep every test's cache files (warm-start banks, Gaussian fits) out of the user's
    cache directory: one fresh directory for the session."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NAPARI_PULSE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def blob_tiles(n: int, seed: int) -> torch.Tensor:
    """``n`` 8x8 low-res tiles of a dark background with one bright blob: a made-up domain
    for :mod:`napari_pulse.domain` models in tests."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    c = torch.rand(n, 2, generator=g) * 6 + 1
    r = torch.rand(n, generator=g) * 1.5 + 1
    d2 = (yy - c[:, :1, None]) ** 2 + (xx - c[:, 1:, None]) ** 2
    tile = torch.exp(-d2 / (2 * r[:, None, None] ** 2)) * 0.9
    return (tile + 0.02 * torch.rand(n, 8, 8, generator=g)).clamp(0, 1)[:, None]


def blob_model(**card):
    """A domain model of :func:`blob_tiles` for the tiny generator at x4 (bicubic);
    ``card`` entries override its card's."""
    from napari_pulse import domain
    from napari_pulse.bank import fingerprint
    from napari_pulse.generators.tiny import TinyGenerator

    base = {
        "generator_sha256": fingerprint(TinyGenerator()),
        "factor": 4,
        "degradation": "bicubic",
        "sigma": None,
        "low_shape": [1, 8, 8],
    }
    calibration = [blob_tiles(9, 100 + i) for i in range(40)]
    return domain.fit(blob_tiles(400, 0), calibration, 5, 0.975, {**base, **card})


@pytest.fixture
def tiny_domain(tmp_path, monkeypatch):
    """A private cache directory holding :func:`blob_model` where ``upscale`` looks for
    the tiny generator's x4 domain model; its path."""
    from napari_pulse import domain

    cache = tmp_path / "cache"
    monkeypatch.setenv("NAPARI_PULSE_CACHE", str(cache))
    (cache / "encoders").mkdir(parents=True)
    path = domain.save(cache / "encoders" / domain.file_name("tiny", 4, "bicubic"), blob_model())
    domain._LOADED.clear()
    yield path
    domain._LOADED.clear()


def tiny_error_model(**card):
    """An expected-error model (:mod:`napari_pulse.error_map`) for the tiny generator at x4
    (bicubic) with made-up weights; ``card`` entries override its card's."""
    from napari_pulse import error_map
    from napari_pulse.bank import fingerprint
    from napari_pulse.generators.tiny import TinyGenerator

    base = {
        "version": error_map.VERSION,
        "generator_sha256": fingerprint(TinyGenerator()),
        "factor": 4,
        "degradation": "bicubic",
        "sigma": None,
    }
    return error_map.ErrorModel((1.0, 0.5, 1e-4), {**base, **card})


@pytest.fixture
def tiny_errors(tmp_path, monkeypatch):
    """A private cache directory holding :func:`tiny_error_model` where ``upscale`` looks
    for the tiny generator's x4 error model; its path."""
    from napari_pulse import error_map

    cache = tmp_path / "cache"
    monkeypatch.setenv("NAPARI_PULSE_CACHE", str(cache))
    (cache / "encoders").mkdir(parents=True, exist_ok=True)
    name = error_map.file_name("tiny", 4, "bicubic")
    path = error_map.save(cache / "encoders" / name, tiny_error_model())
    error_map._LOADED.clear()
    yield path
    error_map._LOADED.clear()


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's torch work on one thread, then restore the setting.

    The tensors in these tests are tiny: one thread is faster, and far faster on a busy
    2-core machine, where two threads contend with everything else.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def third_party_generator(tmp_path, monkeypatch):
    """Install (on sys.path) a tiny package whose entry point registers a generator.

    ``install(dist, module, name, args)`` writes ``module.py`` with ``make()`` returning
    ``TinyGenerator(name=name, <args>)`` and a dist-info naming it under the group
    ``napari_pulse.generators``; the module is forgotten afterwards.
    """
    import sys

    installed: list[str] = []

    def install(dist: str, module: str, name: str, args: str = "") -> None:
        site = tmp_path / "site"
        info = site / f"{module}-0.1.dist-info"
        info.mkdir(parents=True)
        (site / f"{module}.py").write_text(
            "from napari_pulse.generators.tiny import TinyGenerator\n\n\n"
            f"def make():\n    return TinyGenerator({args}name={name!r})\n"
        )
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(
            f"[napari_pulse.generators]\n{name} = {module}:make\n"
        )
        monkeypatch.syspath_prepend(str(site))
        installed.append(module)

    yield install
    for module in installed:
        sys.modules.pop(module, None)
