"""One registry of generators: the bundled ones, those other packages register, published ones.

Other packages add generators under the entry-point group ``napari_pulse.generators``;
each entry point names a zero-argument callable that returns a :class:`DomainGenerator`.
Native ``.safetensors`` files in ``napari_pulse/data/generators`` are bundled generators.
:func:`load` also takes a path to any file :mod:`.files` reads. Listing never loads weights.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from . import published
from .base import DomainGenerator
from .dcgan import FACES_INSTALL_HINT, faces_weights_path, load_faces_dcgan
from .files import FORMATS_HELP, load_file, looks_like_path
from .tiny import TinyGenerator

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "data" / "generators"

ENTRY_POINT_GROUP = "napari_pulse.generators"


@dataclass(frozen=True)
class GeneratorInfo:
    """A registry row: what a generator is, and whether it can be loaded here."""

    name: str
    summary: str
    load: Callable[[], DomainGenerator]
    #: None when loadable; otherwise why not and how to fix it.
    unavailable: Callable[[], str | None] = lambda: None
    source: str = "bundled"

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def reason(self) -> str | None:
        return self.unavailable()


def _faces_missing() -> str | None:
    if faces_weights_path() is None:
        return f"weights not installed; run: {FACES_INSTALL_HINT}"
    return None


_BUILTINS: dict[str, GeneratorInfo] = {
    info.name: info
    for info in [
        GeneratorInfo(
            "faces-dcgan64",
            "64x64 RGB faces (DCGAN, gan-face-generate package, MIT)",
            load_faces_dcgan,
            _faces_missing,
        ),
        GeneratorInfo(
            "tiny",
            "32x32 grayscale untrained random generator, for tests and demos only",
            lambda: TinyGenerator(resolution=32, channels=1),
        ),
        GeneratorInfo(
            "tiny-rgb",
            "32x32 RGB untrained random generator, for tests and demos only",
            lambda: TinyGenerator(resolution=32, channels=3, name="tiny-rgb"),
        ),
    ]
}


def _from_entry_points() -> dict[str, GeneratorInfo]:
    found: dict[str, GeneratorInfo] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "an installed package"

        def load(ep=ep) -> DomainGenerator:
            return ep.load()()

        found[ep.name] = GeneratorInfo(ep.name, f"from {dist}", load, source=dist)
    return found


def _bundled_native() -> dict[str, GeneratorInfo]:
    """Native files shipped in ``data/generators``: listed from their cards, not loaded."""
    from .native import read_card

    found: dict[str, GeneratorInfo] = {}
    for path in sorted(BUNDLED_DIR.glob("*.safetensors")):
        if ".encoder-" in path.name or ".domain-" in path.name:  # kept beside a generator
            continue
        try:
            card = read_card(path)
        except Exception:  # noqa: BLE001 - a damaged file is listed as unavailable
            card, reason = {}, f"cannot read {path.name}"
        else:
            reason = None
        name = str(card.get("name") or path.stem)
        summary = str(card.get("description") or card.get("domain") or "StyleGAN2")

        def load(path=path) -> DomainGenerator:
            return load_file(path)

        found[name] = GeneratorInfo(name, summary, load, lambda r=reason: r)
    return found


def _published() -> dict[str, GeneratorInfo]:
    return {
        name: GeneratorInfo(
            name,
            f"{entry.summary} (downloaded into the cache on first use)",
            lambda name=name: published.load_published(name),
            source="published",
        )
        for name, entry in published.PUBLISHED.items()
    }


def available() -> list[GeneratorInfo]:
    """Every known generator (bundled first, then other packages', then published ones),
    loadable or not. Nothing is loaded."""
    merged = dict(_BUILTINS)
    for extra in (_bundled_native(), _from_entry_points(), _published()):
        for name, info in extra.items():
            merged.setdefault(name, info)
    return list(merged.values())


_loaded: dict[str, DomainGenerator] = {}


def load(name: str | os.PathLike | DomainGenerator) -> DomainGenerator:
    """The generator registered as ``name``, or read from a file path (see :mod:`.files`).

    Loaded once per process (per name, or per file and its modification time), then reused.
    """
    if isinstance(name, DomainGenerator):
        return name
    path = file_of(name)
    if path is not None:
        return _load_path(path)
    if name in _loaded:
        return _loaded[name]
    infos = {info.name: info for info in available()}
    if name not in infos:
        known = ", ".join(sorted(infos))
        raise ValueError(
            f"Unknown generator {name!r}. Available: {known}; or give a path to a file: "
            f"{FORMATS_HELP}."
        )
    info = infos[name]
    reason = info.reason
    if reason is not None:
        raise FileNotFoundError(f"Generator {name!r} is not available: {reason}")
    model = info.load()
    model.eval().requires_grad_(False)
    _loaded[name] = model
    return model


def file_of(name: str | os.PathLike) -> Path | None:
    """The file :func:`load` reads for ``name``; None for a registered generator's name (a
    folder or file of the same name beside it does not change that)."""
    if isinstance(name, os.PathLike) or (looks_like_path(name) and name not in _BUILTINS):
        return Path(name)
    if name in _loaded or name in {info.name for info in available()}:
        return None
    return Path(name) if Path(name).is_file() else None


def _load_path(path: Path) -> DomainGenerator:
    if not path.is_file():
        raise FileNotFoundError(f"generator file not found: {path}")
    key = f"{path.resolve()}@{path.stat().st_mtime_ns}"
    if key not in _loaded:
        _loaded[key] = load_file(path)
    return _loaded[key]


#: The default for grayscale images, when its weights ship in ``data/generators``.
GRAYSCALE_DEFAULT = "nuclei"


def default_for(channels: int) -> str:
    """The generator used when none is named, for an image with this many channels.

    Grayscale images get the bundled ``nuclei`` generator when it ships; otherwise (and for
    RGB) ``faces-dcgan64``, through luminance for grayscale.
    """
    if channels == 1 and GRAYSCALE_DEFAULT in _bundled_native():
        return GRAYSCALE_DEFAULT
    return "faces-dcgan64"
