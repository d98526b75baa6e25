"""One validated options object for an upscale, built by every front end.

:func:`napari_pulse.upscale`, the command line, the napari widget and
:func:`napari_pulse.evaluate.evaluate` all build an :class:`Options`; its constructor checks
every plain value (with the messages users see), and :meth:`Options.resolve` checks what
depends on the generator and returns the :class:`Setup` the pipeline runs with. Devices
are detected here, once (:func:`pick_device`, :func:`present_devices`).
"""

from __future__ import annotations

import copy
import os
import weakref
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

import numpy as np
import torch

from . import guide
from .degrade import DEGRADATIONS, Degradation, check_sigma
from .generators import DomainGenerator, default_for, load
from .intensity import NORMALIZATIONS
from .intermediate import MODES, IntermediateConfig, check_layers
from .job import MAX_SEED
from .render import pass_dtype
from .search import SearchConfig, batch_width


def present_devices() -> list[str]:
    """The torch device types present on this machine: cpu, then cuda and mps if present."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


#: The device types the search runs on (when present).
DEVICE_TYPES = ("cpu", "cuda", "mps")


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; a named device must be present (ValueError
    naming the devices that are, otherwise)."""
    present = present_devices()
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if "cuda" in present else present[-1])
    if not isinstance(device, str | torch.device):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
    here = f"devices here: auto, {', '.join(present)}"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(
            f"Unknown device {device!r}; use auto, cpu, cuda or mps ({here})."
        ) from exc
    if dev.type == "cuda" and "cuda" not in present:
        raise ValueError("device='cuda' was asked for, but no CUDA GPU is available here.")
    if dev.type == "mps" and "mps" not in present:
        raise ValueError("device='mps' was asked for, but Apple's MPS is not available here.")
    if dev.type not in DEVICE_TYPES:
        raise ValueError(f"napari-pulse does not run on device {str(device)!r}; {here}.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {str(device)!r}: there are {torch.cuda.device_count()} CUDA GPU(s) here."
        )
    if dev.type == "cpu" and dev.index not in (None, 0):
        raise ValueError(f"device {str(device)!r}: the CPU has no index; use 'cpu'.")
    return dev


_placed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
M = TypeVar("M", bound=torch.nn.Module)


def on_device(gen: M, device: torch.device) -> M:
    """``gen`` (a generator, or any module such as a cached encoder) where all its tensors
    are on ``device``; otherwise its copy there (made once per module and device). The
    module given (the registry's, the caller's, a cache's) is never moved, so no call
    depends on what an earlier one did with it."""
    tensors = [*gen.parameters(), *gen.buffers()]
    if all(_same(t.device, device) for t in tensors):
        return gen
    copies = _placed.setdefault(gen, {})
    stamp = tuple((t.data_ptr(), t._version) for t in tensors)  # weights changed since?
    key = str(device)
    if key not in copies or copies[key][0] != stamp:
        copies[key] = (stamp, copy.deepcopy(gen).to(device))
    return copies[key][1]


def _same(a: torch.device, b: torch.device) -> bool:
    """Whether two devices are one (``cuda`` is the current CUDA device)."""
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    current = torch.cuda.current_device()
    return (a.index if a.index is not None else current) == (
        b.index if b.index is not None else current
    )


def starts_config(
    bank: int = 0, quick: bool = False, guided: bool = False, base: SearchConfig | None = None
) -> SearchConfig | None:
    """The search settings for a choice of start strategies, as the command line and the
    widget offer them: a quick wave or guided starts without a bank size get the bank they
    need (:func:`napari_pulse.guide.bank_size`). None when nothing differs from ``base``."""
    size = guide.bank_size(bank, quick, guided)
    if not size and base is None:
        return None
    return replace(base or SearchConfig(), bank=size, quick=quick, guide=guided)


def _count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_number(value: Any, strict: bool, message: str) -> None:
    """A real number above 0 (``strict``) or at least 0; else ``message``."""
    real = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    if not (real and (value > 0 if strict else value >= 0)):
        raise ValueError(f"{message}, got {value!r}")


def _with_width(cfg: SearchConfig, device: torch.device) -> SearchConfig:
    """``cfg`` with its batch width set (chosen for the device when not given); its
    precision and its encoder and retry rungs checked."""
    pass_dtype(cfg.precision, device)  # a clear error for an unknown precision
    for name, least in (("encoder_starts", 1), ("encoder_steps", 1), ("encoder_patience", 0)):
        if getattr(cfg, name) is not None:  # None: the encoder's own budget
            _count(f"config.{name}", getattr(cfg, name), least)
    _count("config.retry_starts", cfg.retry_starts, 0)
    _count("config.retry_steps", cfg.retry_steps, 1)
    spread = cfg.retry_spread
    _check_number(spread, False, "config.retry_spread must be a number in [0, 2]")
    if spread > 2:
        raise ValueError(f"config.retry_spread must be a number in [0, 2], got {spread!r}")
    if cfg.blend_tiles is not None:
        _count("config.blend_tiles", cfg.blend_tiles, 1)
    if cfg.batch_size is not None:
        _count("config.batch_size", cfg.batch_size, 1)
        return cfg
    return replace(cfg, batch_size=batch_width(device))


@dataclass(frozen=True)
class Setup:
    """Options resolved against their generator: what the pipeline runs with."""

    generator: DomainGenerator
    factor: int
    degrade: Degradation
    cfg: SearchConfig  # the search's settings, with steps, restarts, samples and eps
    mode: str
    intermediate: IntermediateConfig  # the feature search's settings (intermediate mode)
    layers: tuple[int, ...]  # its feature maps, checked against the generator
    device: torch.device
    seed: int
    normalization: str
    overlap: int | None

    @property
    def tile(self) -> tuple[int, int]:
        """The low-res tile: the generator's resolution over the factor."""
        h, w = self.generator.resolution
        return h // self.factor, w // self.factor


@dataclass(frozen=True)
class Options:
    """Everything an upscale can be asked for (see :func:`napari_pulse.upscale`).

    Constructing one checks every value that does not depend on the generator;
    :meth:`resolve` checks the rest. ``config`` holds the finer search settings and the
    start strategies; ``steps``, ``restarts``, ``samples`` and ``eps`` override its own.
    """

    generator: str | os.PathLike | DomainGenerator | None = None
    factor: int = 4
    degradation: str = "bicubic"
    sigma: float | None = None
    steps: int = SearchConfig.steps
    restarts: int = SearchConfig.restarts
    samples: int = 1
    seed: int = 0
    device: str | torch.device = "auto"
    normalization: str = "auto"
    rgb: bool | None = None
    eps: float = 2e-3
    overlap: int | None = None
    config: SearchConfig | None = None
    mode: str = "latent"
    intermediate: IntermediateConfig | None = None
    realism: float = 0.0

    def __post_init__(self) -> None:
        g = self.generator
        if not (g is None or isinstance(g, str | os.PathLike | DomainGenerator)):
            raise TypeError(
                "generator must be a name, a path to a weights file or a DomainGenerator, "
                f"got {type(g).__name__}"
            )
        f = self.factor
        if isinstance(f, bool) or not isinstance(f, (int, np.integer)):
            raise TypeError(f"factor must be an integer (2, 3, 4, ...), got {f!r}")
        if f < 2:
            raise ValueError(f"factor must be at least 2, got {f}")
        for name, value, known in (
            ("degradation", self.degradation, DEGRADATIONS),
            ("normalization", self.normalization, NORMALIZATIONS),
            ("mode", self.mode, MODES),
        ):
            if value not in known:
                raise ValueError(
                    f"Unknown {name} {value!r}; choose one of {', '.join(known)}."
                )  # fmt: skip
        for name in ("steps", "restarts", "samples"):
            _count(name, getattr(self, name), 1)
        if self.samples > self.restarts:
            raise ValueError(
                f"samples ({self.samples}) cannot exceed restarts ({self.restarts}): "
                "each sample is a distinct start"
            )
        _check_number(self.eps, True, "eps must be a positive number")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise TypeError(f"seed must be an integer, got {self.seed!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer from 0 to 2**63 - 1, got {self.seed}")
        if self.degradation == "psf":
            check_sigma(self.sigma, int(f))
        elif self.sigma is not None:
            raise ValueError(
                f"sigma applies to the psf degradation only, not to {self.degradation!r}"
            )
        o = self.overlap
        if o is not None and (isinstance(o, bool) or not isinstance(o, (int, np.integer)) or o < 0):
            raise ValueError(f"overlap must be an integer >= 0 low-res pixels, got {o!r}")
        _check_number(self.realism, False, "realism must be a number >= 0")
        self._check_config()
        pick_device(self.device)

    def _check_config(self) -> None:
        cfg = self.config
        if cfg is not None and not isinstance(cfg, SearchConfig):
            raise TypeError(f"config must be a SearchConfig, got {type(cfg).__name__}")
        inter = self.intermediate
        if inter is not None and not isinstance(inter, IntermediateConfig):
            raise TypeError(
                f"intermediate must be an IntermediateConfig, got {type(inter).__name__}"
            )
        cfg = cfg or SearchConfig()
        _count("config.bank", cfg.bank, 0)
        if cfg.quick and not cfg.bank:
            raise ValueError(
                "a quick first wave starts from a warm-start bank: set bank "
                f"(e.g. {guide.QUICK_BANK})"
            )
        if cfg.guide and not cfg.bank:
            raise ValueError(
                "guided starts are fitted on a warm-start bank: set bank "
                f"(e.g. {guide.RECOMMENDED_BANK})"
            )

    def search_config(self) -> SearchConfig:
        """``config`` with this object's steps, restarts, samples and eps (and, in latent
        mode, ``realism`` as extra GEOCROSS)."""
        cfg = replace(
            self.config or SearchConfig(),
            steps=int(self.steps),
            restarts=int(self.restarts),
            samples=int(self.samples),
            eps=self.eps,
        )
        if self.mode == "latent" and self.realism:
            cfg = replace(cfg, geocross_weight=cfg.geocross_weight + float(self.realism))
        return cfg

    def resolve(self, rgb: bool) -> Setup:
        """Load the generator (the default for the image's channels when none was named),
        check what depends on it, and pick the device."""
        g = self.generator if self.generator is not None else default_for(3 if rgb else 1)
        gen = load(g) if isinstance(g, str | os.PathLike) else g
        factor, tile = int(self.factor), min(gen.resolution) // int(self.factor)
        if tile < 2:
            raise ValueError(
                f"factor {factor} is too large for generator {gen.name!r} "
                f"({gen.resolution[0]}x{gen.resolution[1]}): its low-res tile would be "
                f"under 2 pixels. The largest factor it supports is {min(gen.resolution) // 2}."
            )
        if self.overlap is not None and not self.overlap < tile:
            raise ValueError(
                f"overlap must be an integer from 0 to {tile - 1} low-res pixels, "
                f"got {self.overlap!r}"
            )
        icfg = self.intermediate or IntermediateConfig()
        layers: tuple[int, ...] = ()
        if self.mode == "intermediate":  # its feature maps must exist
            icfg = replace(icfg, realism=float(self.realism)) if self.realism else icfg
            layers = check_layers(icfg.layers, gen.feature_shapes(), gen.name)
        dev = pick_device(self.device)
        return Setup(
            generator=on_device(gen, dev),
            factor=factor,
            degrade=Degradation(self.degradation, factor, self.sigma).to(dev),
            cfg=_with_width(self.search_config(), dev),
            mode=self.mode,
            intermediate=icfg,
            layers=layers,
            device=dev,
            seed=int(self.seed),
            normalization=self.normalization,
            overlap=None if self.overlap is None else int(self.overlap),
        )

    def describe(self) -> dict[str, Any]:
        """The options as plain values (for reports and JSON): the generator by name."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        g = self.generator
        out["generator"] = g.name if isinstance(g, DomainGenerator) else g and str(g)
        out["device"] = str(self.device)
        out["config"] = None if self.config is None else asdict(self.config)
        out["intermediate"] = None if self.intermediate is None else asdict(self.intermediate)
        return out


def merged(options: Options | None, settings: dict[str, Any]) -> Options:
    """``options`` (default: :class:`Options`) with the keyword ``settings`` over its
    fields; a TypeError names anything that is not an option."""
    base = options if options is not None else Options()
    if not isinstance(base, Options):
        raise TypeError(f"options must be an Options, got {type(base).__name__}")
    unknown = sorted(set(settings) - set(Options.__dataclass_fields__))
    if unknown:
        raise TypeError(f"unknown upscale option(s): {', '.join(unknown)}")
    return replace(base, **settings) if settings else base
