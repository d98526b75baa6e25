"""``upscale(image, ...) -> Result``: the one public entry point of the engine."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from . import __version__, bank, guide
from .degrade import DEGRADATIONS, Degradation
from .events import Cancelled, Finished, Progress, relay
from .generators import DomainGenerator, default_for, load
from .intensity import ACCEPTED_DTYPES, NORMALIZATIONS, Intensity, cast_like, fit_intensity
from .intermediate import (
    MODES,
    IntermediateConfig,
    check_layers,
    planned_feature_steps,
    search_features,
)
from .search import Renderer, SearchConfig, blend, choose, merge, planned_steps, search
from .tiling import Mosaic, TileGrid


@dataclass
class Result:
    """What an upscale returns. Arrays are in the input's units; ``image`` has its dtype.

    ``image`` is the best sample. ``samples`` (``(N, *image.shape)``) and ``std`` (the
    per-pixel spread across samples, where the generator invented detail) are set when
    more than one sample was asked for. ``lr_psnr`` compares the downscaled result with
    the input in [0, 1] units (dB; per tile in ``lr_psnr_tiles``, shape ``(*planes, rows,
    cols)``). ``success`` says whether the low-res MSE is at most ``eps``.
    ``ood_score`` (and ``ood_tiles``, shaped like ``lr_psnr_tiles``) says how far the
    intermediate search had to leave the generator's own features: the share of the
    allowed feature ball used, 0 to 1 (0 in ``latent`` mode, which never leaves the prior).
    ``atypicality`` (median over ``atypical_tiles``; set when the search starts from a bank,
    see :mod:`napari_pulse.bank`) says how unlike the generator's own images the input is,
    before any search: about 0.5 for typical tiles, near 1 for tiles farther from all of
    the generator's images than its own images are from each other.
    """

    image: np.ndarray
    lr_psnr: float
    lr_mse: float
    success: bool
    lr_psnr_tiles: np.ndarray
    success_tiles: np.ndarray
    params: dict[str, Any]
    samples: np.ndarray | None = None
    std: np.ndarray | None = None
    sample_lr_psnr: list[float] = field(default_factory=list)
    ood_score: float = 0.0
    ood_tiles: np.ndarray | None = None
    atypicality: float | None = None
    atypical_tiles: np.ndarray | None = None

    @property
    def mean(self) -> np.ndarray:
        """The mean of the samples (a higher-fidelity, blurrier estimate), as float32."""
        if self.samples is None:
            return self.image.astype(np.float32)
        return self.samples.astype(np.float32).mean(axis=0)


def _psnr(mse: float) -> float:
    """PSNR in dB for data in [0, 1], capped at 100 dB (a perfect match)."""
    return 10 * math.log10(1 / max(mse, 1e-10))


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; a named device must be present."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"Unknown device {device!r}; use auto, cpu, cuda or mps.") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for, but no CUDA GPU is available here.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' was asked for, but Apple's MPS is not available here.")
    return dev


@dataclass(frozen=True)
class _Layout:
    """How the user's array maps to planes ``(P, C, h, w)`` for the search, and back."""

    lead: tuple[int, ...]  # leading (non-spatial) axes, each plane upscaled on its own
    rgb: bool
    split_channels: bool  # RGB input on a grayscale generator: each channel is a plane


def _check_image(image: Any, rgb: bool | None) -> tuple[np.ndarray, bool]:
    if isinstance(image, np.ndarray):
        arr = image
    else:
        try:
            arr = np.asarray(image)
        except Exception as exc:  # noqa: BLE001 - anything not array-like gets the same message
            raise TypeError(f"image must be an array, got {type(image).__name__}") from exc
    if arr.dtype == bool:
        raise TypeError(
            "image is a boolean mask; upscaling needs intensities (uint8, uint16, int16 or float)."
        )
    if arr.dtype not in [np.dtype(d) for d in ACCEPTED_DTYPES]:
        hint = (
            " Integer arrays other than uint8/uint16/int16 are usually label images, which this "
            "tool does not upscale; convert to float32 if these are intensities."
            if np.issubdtype(arr.dtype, np.integer)
            else ""
        )
        raise TypeError(f"image dtype {arr.dtype} is not supported.{hint}")
    if arr.ndim < 2:
        raise ValueError(f"image must have at least 2 dimensions (Y, X), got shape {arr.shape}")
    if rgb is None:
        if arr.ndim >= 3 and arr.shape[-1] == 4:
            raise ValueError(
                "image looks like RGBA (last axis of 4); drop the alpha channel first, or pass "
                "rgb=False to treat the last axis as the X axis."
            )
        rgb = arr.ndim >= 3 and arr.shape[-1] == 3
    if rgb and arr.shape[-1] != 3:
        raise ValueError(f"rgb=True needs a last axis of 3 (R, G, B), got shape {arr.shape}")
    spatial = arr.shape[-3:-1] if rgb else arr.shape[-2:]
    if len(spatial) < 2:
        raise ValueError(f"an RGB image needs (Y, X, 3), got shape {arr.shape}")
    if arr.size == 0 or min(spatial) < 2:
        raise ValueError(
            f"image is too small to upscale: {spatial[0]}x{spatial[1]} pixels (need 2x2 or more)"
        )
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError("image contains NaN or infinite values; replace them before upscaling.")
    return arr, bool(rgb)


def _check_factor(factor: Any, generator: DomainGenerator) -> int:
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)):
        raise TypeError(f"factor must be an integer (2, 3, 4, ...), got {factor!r}")
    factor = int(factor)
    if factor < 2:
        raise ValueError(f"factor must be at least 2, got {factor}")
    tile = min(generator.resolution) // factor
    if tile < 2:
        largest = min(generator.resolution) // 2
        raise ValueError(
            f"factor {factor} is too large for generator {generator.name!r} "
            f"({generator.resolution[0]}x{generator.resolution[1]}): its low-res tile would be "
            f"under 2 pixels. The largest factor it supports is {largest}."
        )
    return factor


def _check_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def iter_upscale(
    image: Any,
    *,
    generator: str | os.PathLike | DomainGenerator | None = None,
    factor: int = 4,
    degradation: str = "bicubic",
    sigma: float | None = None,
    steps: int = SearchConfig.steps,
    restarts: int = SearchConfig.restarts,
    samples: int = 1,
    seed: int = 0,
    device: str | torch.device = "auto",
    normalization: str = "auto",
    rgb: bool | None = None,
    eps: float = 2e-3,
    overlap: int | None = None,
    config: SearchConfig | None = None,
    mode: str = "latent",
    intermediate: IntermediateConfig | None = None,
    realism: float = 0.0,
) -> Generator[Progress | Finished, None, None]:
    """:func:`upscale` as a stream of :class:`Progress` events ending with :class:`Finished`.

    Stop iterating (or ``close()`` the generator) to cancel; that takes effect at the next
    optimiser step, and nothing of the caller's is changed.

    ``mode``: ``latent`` (PULSE) or ``intermediate`` (then feature maps inside a ball, see
    :mod:`napari_pulse.intermediate`; settings in ``intermediate``). ``realism`` weighs a
    pull toward the prior: in ``intermediate`` mode the feature offsets' size, in ``latent``
    mode extra GEOCROSS for per-layer latents (no effect on single-vector latents).
    """
    arr, rgb = _check_image(image, rgb)
    if generator is None:
        generator = default_for(3 if rgb else 1)
    gen = load(generator) if isinstance(generator, str | os.PathLike) else generator
    if not isinstance(gen, DomainGenerator):
        raise TypeError(
            "generator must be a name, a path to a weights file or a DomainGenerator, "
            f"got {type(generator).__name__}"
        )
    factor = _check_factor(factor, gen)
    if degradation not in DEGRADATIONS:
        raise ValueError(
            f"Unknown degradation {degradation!r}; choose one of {', '.join(DEGRADATIONS)}."
        )
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"Unknown normalization {normalization!r}; choose one of {', '.join(NORMALIZATIONS)}."
        )
    steps = _check_count("steps", steps, 1)
    restarts = _check_count("restarts", restarts, 1)
    samples = _check_count("samples", samples, 1)
    if samples > restarts:
        raise ValueError(
            f"samples ({samples}) cannot exceed restarts ({restarts}): "
            "each sample is a distinct start"
        )
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    tile = (gen.resolution[0] // factor, gen.resolution[1] // factor)
    if overlap is not None and (
        isinstance(overlap, bool)
        or not isinstance(overlap, (int, np.integer))
        or not 0 <= overlap < min(tile)
    ):
        raise ValueError(
            f"overlap must be an integer from 0 to {min(tile) - 1} low-res pixels, got {overlap!r}"
        )
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}.")
    if not (isinstance(realism, (int, float)) and realism >= 0):
        raise ValueError(f"realism must be a number >= 0, got {realism!r}")
    icfg, layers = None, ()
    if mode == "intermediate":
        icfg = intermediate or IntermediateConfig()
        if realism:
            icfg = replace(icfg, realism=float(realism))
        layers = check_layers(icfg.layers, gen.feature_shapes(), gen.name)
    dev = pick_device(device)
    degrade = Degradation(degradation, factor, sigma).to(dev)
    base = config or SearchConfig()
    _check_count("config.bank", base.bank, 0)
    if base.quick and not base.bank:
        raise ValueError("a quick first wave starts from a warm-start bank: set bank (e.g. 4096)")
    if base.guide and not base.bank:
        raise ValueError(
            "guided starts are fitted on a warm-start bank: set bank "
            f"(e.g. {guide.RECOMMENDED_BANK})"
        )
    cfg = SearchConfig(
        **{**base.__dict__, "steps": steps, "restarts": restarts, "samples": samples, "eps": eps}
    )
    if mode == "latent" and realism:
        cfg = replace(cfg, geocross_weight=cfg.geocross_weight + float(realism))
    return _stream(
        arr, rgb, gen, factor, degrade, normalization, cfg, int(seed), dev, overlap, icfg, layers
    )


def _stream(
    arr: np.ndarray,
    rgb: bool,
    gen: DomainGenerator,
    factor: int,
    degrade: Degradation,
    normalization: str,
    cfg: SearchConfig,
    seed: int,
    dev: torch.device,
    overlap: int | None,
    icfg: IntermediateConfig | None = None,
    layers: tuple[int, ...] = (),
) -> Generator[Progress | Finished, None, None]:
    """The work of :func:`iter_upscale`, on arguments that have been checked."""
    steps, restarts, samples, eps = cfg.steps, cfg.restarts, cfg.samples, cfg.eps
    degradation, sigma = degrade.kind, degrade.sigma
    layout = _Layout(
        lead=arr.shape[:-3] if rgb else arr.shape[:-2],
        rgb=rgb,
        split_channels=rgb and gen.channels == 1,
    )
    mode = gen.card.normalization if normalization == "auto" else normalization
    intensity = fit_intensity(arr, mode)
    unit = intensity.to_unit(arr)  # a new float32 array: the caller's is never touched
    planes = _to_planes(unit, layout)  # (P, C, h, w)
    n_planes, c, h, w = planes.shape
    tile = (gen.resolution[0] // factor, gen.resolution[1] // factor)
    grid = TileGrid.plan((h, w), tile, factor, overlap)
    render = Renderer(gen, c, (grid.tile[0] * factor, grid.tile[1] * factor))
    gen.to(dev)

    target = torch.from_numpy(np.clip(planes, 0, 1)).to(dev)
    lr_tiles = grid.cut(target).flatten(0, 1)  # (P * T, C, th, tw)
    n_units = lr_tiles.shape[0]
    rng = torch.Generator().manual_seed(int(seed))
    z0 = gen.sample_latents(n_units * restarts, rng).view(n_units, restarts, *gen.latent_shape)
    noise0 = [torch.randn((n_units, restarts, *s), generator=rng) for s in gen.noise_shapes()]
    z0, noise0 = z0.to(dev), [n.to(dev) for n in noise0]
    n_mosaics = n_planes * samples
    total = planned_steps(n_units, len(grid), n_mosaics, cfg)
    if icfg is not None:
        total += planned_feature_steps(n_units * samples, len(layers), icfg, cfg.batch_size)
    qcfg = cfg.quick_wave() if cfg.quick else None
    quick_steps = 0 if qcfg is None else planned_steps(n_units, 1, n_mosaics, qcfg)
    search_steps = planned_steps(n_units, 1, n_mosaics, cfg)
    total += quick_steps
    bank_images = key = None
    if cfg.bank:
        starts = restarts if qcfg is None else qcfg.restarts  # what the bank must supply
        # Guided starts take their randomness from ``seed`` and the bank is only the
        # guide's training set: one bank (seed 0) then serves every seed.
        bank_seed = guide.BANK_SEED if cfg.guide else int(seed)
        key = bank.key_for(render, degrade, max(cfg.bank, starts), bank_seed)
        bank_images = bank.CACHE.get(key)
        if bank_images is None:
            total += bank.pieces(key.size)
    guesser = None
    if cfg.guide:
        guesser = guide.cached(key, tuple(lr_tiles.shape[1:]), gen.latent_shape)
        if guesser is None:
            total += guide.events()
    progress = {"done": 0, "total": total}
    if key is not None:
        if bank_images is None:
            bank_images = yield from bank.build(render, degrade, key, dev, total)
            progress["done"] = bank.pieces(key.size)
        if cfg.guide:  # guided starts for the search (a quick wave still starts nearest)
            if guesser is None:
                pairs = bank_images.to(dev), bank.latents(gen, key.size, key.seed).to(dev)
                guesser = yield from guide.build(*pairs, key.seed, total, progress["done"])
                progress["done"] += guide.events()
                guide.store(key, guesser)
            z0 = guide.starts(guesser, lr_tiles, restarts, rng).to(dev)
        elif qcfg is None:  # warm starts for the search itself
            z0, noise0 = bank.starts(gen, bank_images, lr_tiles, restarts, key.seed, dev)
    first_stage = "search" if qcfg is None else "quick"
    yield Progress(first_stage, progress["done"], progress["total"], 1, 1, math.inf)

    live = torch.nn.functional.interpolate(lr_tiles, scale_factor=factor, mode="bilinear")
    live = live[..., : render.crop[0], : render.crop[1]]

    def preview() -> np.ndarray:
        tiles = live.view(n_planes, len(grid), *live.shape[1:])
        img = Mosaic(grid, tiles).image().cpu().numpy()[:, None]  # (P, 1, C, H, W)
        return cast_like(intensity.from_unit(_from_planes(img, layout)), arr.dtype)[0]

    quick_at_eps = None
    if qcfg is None:
        search_events = search(render, degrade, lr_tiles, z0, noise0, cfg, progress, live)
        cands = yield from _with_preview(search_events, preview)
    else:  # the quick wave, then the search for the tiles it left above eps
        zq, nq = bank.starts(gen, bank_images, lr_tiles, qcfg.restarts, key.seed, dev)
        start = progress["done"]
        quick_events = search(render, degrade, lr_tiles, zq, nq, qcfg, progress, live, "quick")
        cands = yield from _with_preview(quick_events, preview)
        left = (cands.mse[:, 0] > eps).nonzero().flatten()
        quick_at_eps = n_units - len(left)
        progress["done"] = start + quick_steps
        if len(left):
            sub = [n[left] for n in noise0]
            events = search(render, degrade, lr_tiles[left], z0[left], sub, cfg, progress)
            cands = merge(cands, (yield from _with_preview(events, preview)), left)
        progress["done"] = start + quick_steps + search_steps
    pick = choose(cands, samples)  # (U, N)
    units = torch.arange(n_units, device=pick.device)[:, None]
    t = len(grid)

    def per_mosaic(x: torch.Tensor) -> torch.Tensor:  # (U, N, ...) -> (P * N, T, ...)
        x = x.view(n_planes, t, samples, *x.shape[2:]).transpose(1, 2)
        return x.reshape(n_planes * samples, t, *x.shape[3:])

    z = cands.z[units, pick]
    noise = [n[units, pick] for n in cands.noise]
    images = cands.images[units, pick]
    offsets: dict[int, torch.Tensor] = {}
    ood = torch.zeros((n_units, samples), device=z.device)
    # The latent search's own fit of each tile (best sample), before any feature offsets.
    latent_mse = cands.mse[units, pick][:, 0].view(n_planes, len(grid)).cpu().numpy()
    if icfg is not None:  # feature maps, from the chosen latents
        offsets, score, found = yield from search_features(
            render,
            degrade,
            lr_tiles.repeat_interleave(samples, dim=0),
            z.flatten(0, 1),
            [n.flatten(0, 1) for n in noise],
            cfg,
            icfg,
            layers,
            progress,
        )
        offsets = {
            k: per_mosaic(o.view(n_units, samples, *o.shape[1:])) for k, o in offsets.items()
        }
        ood = score.view(n_units, samples)
        images = found.view(n_units, samples, *found.shape[1:])
    z, noise, tiles = per_mosaic(z), [per_mosaic(n) for n in noise], per_mosaic(images)
    mosaic_targets = target.repeat_interleave(samples, dim=0)
    mosaics = yield from blend(
        render, degrade, grid, mosaic_targets, z, noise, tiles, cfg, progress, offsets
    )
    mosaics = mosaics.detach().cpu().numpy().reshape(n_planes, samples, c, h * factor, w * factor)

    result = _assemble(mosaics, planes, layout, intensity, arr.dtype, degrade, grid, eps)
    ood_tiles = ood[:, 0].cpu().numpy().reshape(n_planes, len(grid))
    if layout.split_channels:  # one figure per RGB tile: the channel that went furthest
        ood_tiles = ood_tiles.reshape(-1, 3, len(grid)).max(axis=1)
    result.ood_tiles = ood_tiles.reshape(*layout.lead, *grid.shape)
    result.ood_score = float(result.ood_tiles.max())
    if bank_images is not None:
        atyp = bank.atypicality(bank_images, lr_tiles).cpu().numpy().reshape(n_planes, len(grid))
        if layout.split_channels:
            atyp = atyp.reshape(-1, 3, len(grid)).max(axis=1)
        result.atypical_tiles = atyp.reshape(*layout.lead, *grid.shape)
        result.atypicality = float(np.median(result.atypical_tiles))
    result.params = {
        "generator": gen.name,
        "generator_resolution": list(gen.resolution),
        "factor": factor,
        "degradation": degradation,
        "sigma": sigma,
        "steps": steps,
        "restarts": restarts,
        "samples": samples,
        "seed": seed,
        "eps": eps,
        "normalization": intensity.as_dict(),
        "rgb": rgb,
        "channel_conversion": _conversion(layout, gen),
        "tiles": {"grid": list(grid.shape), "tile": list(grid.tile), "overlap": grid.overlap},
        "blend_steps": cfg.n_blend_steps if len(grid) > 1 else 0,
        "mode": "latent" if icfg is None else "intermediate",
        "quick_wave_tiles_at_eps": quick_at_eps,
        "intermediate": None if icfg is None else {**icfg.__dict__, "layers": list(layers)},
        "latent_phase_tile_lr_psnr": np.vectorize(_psnr, otypes=[float])(latent_mse).tolist(),
        "search": dict(cfg.__dict__),
        "device": str(dev),
        "napari_pulse": __version__,
        "torch": torch.__version__,
    }
    yield Finished(result)


def _with_preview(stream: Generator, preview: Callable[[], np.ndarray]) -> Generator:
    """Pass ``stream``'s events on with ``preview`` attached; return what it returns."""
    return (yield from relay(stream, lambda event: replace(event, preview=preview)))


def _conversion(layout: _Layout, gen: DomainGenerator) -> str:
    if layout.split_channels:
        return "rgb input, grayscale generator: each channel upscaled on its own"
    if not layout.rgb and gen.channels == 3:
        return "grayscale input, rgb generator: generator output taken as luminance (BT.601)"
    return "none"


def _to_planes(unit: np.ndarray, layout: _Layout) -> np.ndarray:
    if layout.rgb:
        h, w = unit.shape[-3:-1]
        x = unit.reshape(-1, h, w, 3).transpose(0, 3, 1, 2)  # (P, 3, h, w)
        return np.ascontiguousarray(x.reshape(-1, 1, h, w) if layout.split_channels else x)
    h, w = unit.shape[-2:]
    return np.ascontiguousarray(unit.reshape(-1, 1, h, w))


def _from_planes(x: np.ndarray, layout: _Layout) -> np.ndarray:
    """``(P, N, C, H, W)`` back to ``(N, *lead, H, W[, 3])``."""
    n_planes, n, c, hh, ww = x.shape
    if layout.split_channels:
        x = x.reshape(n_planes // 3, 3, n, hh, ww).transpose(0, 2, 1, 3, 4)  # (P, N, 3, H, W)
    x = x.transpose(1, 0, 2, 3, 4)  # (N, P, C, H, W)
    if layout.rgb:
        return x.transpose(0, 1, 3, 4, 2).reshape(n, *layout.lead, hh, ww, 3)
    return x.reshape(n, *layout.lead, hh, ww)


def _assemble(
    mosaics: np.ndarray,
    planes: np.ndarray,
    layout: _Layout,
    intensity: Intensity,
    dtype: np.dtype,
    degrade: Degradation,
    grid: TileGrid,
    eps: float,
) -> Result:
    """Cast the mosaics to the input's units and dtype, and measure them against the input."""
    n_planes, n_samples = mosaics.shape[:2]
    out = cast_like(intensity.from_unit(_from_planes(mosaics, layout)), dtype)  # (N, ...)
    # Judge what the user gets: the cast output, brought back to [0, 1] and downscaled.
    back = np.stack([_to_planes(u, layout) for u in intensity.to_unit(out)])  # (N, P, C, H, W)
    with torch.no_grad():
        lr = degrade(torch.from_numpy(back).flatten(0, 1).to(degrade.taps.device)).cpu().numpy()
    lr = lr.reshape(n_samples, n_planes, *lr.shape[1:])
    err = (lr - planes[None]) ** 2  # against the unclipped input
    sample_mse = [float(e.mean()) for e in err]
    th, tw = grid.tile
    tile_mse = np.array(
        [
            [err[0, p, :, y : y + th, x : x + tw].mean() for (y, x) in grid.origins]
            for p in range(n_planes)
        ]
    )
    if layout.split_channels:  # one figure per RGB tile
        tile_mse = tile_mse.reshape(-1, 3, len(grid)).mean(axis=1)
    tile_mse = tile_mse.reshape(*layout.lead, *grid.shape)
    samples = out if n_samples > 1 else None
    std = out.astype(np.float32).std(axis=0) if n_samples > 1 else None
    return Result(
        image=out[0],
        lr_psnr=_psnr(sample_mse[0]),
        lr_mse=sample_mse[0],
        success=sample_mse[0] <= eps,
        lr_psnr_tiles=np.vectorize(_psnr, otypes=[float])(tile_mse),
        success_tiles=tile_mse <= eps,
        params={},
        samples=samples,
        std=std,
        sample_lr_psnr=[_psnr(m) for m in sample_mse],
    )


def upscale(
    image: Any,
    *,
    generator: str | os.PathLike | DomainGenerator | None = None,
    factor: int = 4,
    degradation: str = "bicubic",
    sigma: float | None = None,
    steps: int = SearchConfig.steps,
    restarts: int = SearchConfig.restarts,
    samples: int = 1,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: Callable[[Progress], Any] | None = None,
    cancel: Callable[[], bool] | None = None,
    **options: Any,
) -> Result:
    """Upscale ``image`` by ``factor`` with a latent search in ``generator``.

    ``image``: ``(Y, X)`` grayscale or ``(Y, X, 3)`` RGB, uint8/uint16/int16/float; leading
    axes (``(..., Y, X[, 3])``, e.g. T or Z) are planes, each upscaled on its own.
    ``generator``: a registered name (see ``napari_pulse.generators.available()``), a path
    to a weights file (native ``.safetensors``, rosinality ``.pt``, NVlabs ``.pkl``), or a
    :class:`DomainGenerator`; None picks the default for the image's channels.
    ``progress`` is called with every :class:`Progress` event; ``cancel`` (for example
    ``threading.Event().is_set``) is polled at every optimiser step and, when it returns
    True, :class:`Cancelled` is raised. Other keywords (``normalization``, ``rgb``, ``eps``,
    ``overlap``, ``config``) go to :func:`iter_upscale`.
    """
    stream = iter_upscale(
        image,
        generator=generator,
        factor=factor,
        degradation=degradation,
        sigma=sigma,
        steps=steps,
        restarts=restarts,
        samples=samples,
        seed=seed,
        device=device,
        **options,
    )
    try:
        for event in stream:
            if isinstance(event, Finished):
                return event.result
            if progress is not None:
                progress(event)
            if cancel is not None and cancel():
                raise Cancelled("upscale cancelled")
    finally:
        stream.close()
    raise RuntimeError("the upscale stream ended without a result")  # pragma: no cover
