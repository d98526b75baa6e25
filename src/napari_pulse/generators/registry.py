"""One registry of generators: the bundled ones and those other packages register.

Other packages add generators under the entry-point group ``napari_pulse.generators``;
each entry point names a zero-argument callable that returns a :class:`DomainGenerator`.
Listing never loads weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from .base import DomainGenerator
from .dcgan import FACES_INSTALL_HINT, faces_weights_path, load_faces_dcgan
from .tiny import TinyGenerator

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


def available() -> list[GeneratorInfo]:
    """Every known generator (bundled first, then other packages'), loadable or not."""
    merged = dict(_BUILTINS)
    for name, info in _from_entry_points().items():
        merged.setdefault(name, info)
    return list(merged.values())


_loaded: dict[str, DomainGenerator] = {}


def load(name: str | DomainGenerator) -> DomainGenerator:
    """The generator registered as ``name`` (loaded once per process, then reused)."""
    if isinstance(name, DomainGenerator):
        return name
    if name in _loaded:
        return _loaded[name]
    infos = {info.name: info for info in available()}
    if name not in infos:
        known = ", ".join(sorted(infos))
        raise ValueError(f"Unknown generator {name!r}. Available: {known}.")
    info = infos[name]
    reason = info.reason
    if reason is not None:
        raise FileNotFoundError(f"Generator {name!r} is not available: {reason}")
    model = info.load()
    model.eval().requires_grad_(False)
    _loaded[name] = model
    return model


def default_for(channels: int) -> str:
    """The generator used when none is named, for an image with this many channels."""
    # Only one trained generator ships so far; grayscale images use it through luminance.
    return "faces-dcgan64"
