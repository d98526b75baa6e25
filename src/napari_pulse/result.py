"""What an upscale returns (:class:`Result`), and how the pipeline's mosaics become one."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import __version__, bank, domain
from .degrade import Degradation
from .error_map import ErrorModel
from .intensity import Intensity, cast_like
from .job import Job, State
from .layout import Layout
from .options import Setup
from .tiling import TileGrid


@dataclass
class Result:
    """What an upscale returns. Arrays are in the input's units; ``image`` has its dtype.

    ``image`` is the best sample. ``samples`` (``(N, *image.shape)``) and ``std`` (the
    local spread across samples, where the generator invented detail: their per-pixel
    variance averaged over a window of half a low-res pixel, square-rooted) are set when
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
    ``in_domain`` says whether the input looks like the generator's training images
    (:mod:`napari_pulse.domain`: False flags a foreign image); ``domain_score`` is the mean
    of ``domain_tiles`` (above 1: foreign). All three are None where no domain model
    exists for the generator, factor and operator.
    ``error`` is the expected error of every pixel of ``image`` (:mod:`napari_pulse.
    error_map`: an RMS estimate in the input's units, calibrated on the generator's
    training domain; bright where the image is most likely wrong), shaped like ``image``;
    None where no error model exists for the generator, factor and operator.
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
    in_domain: bool | None = None
    domain_score: float | None = None
    domain_tiles: np.ndarray | None = None
    error: np.ndarray | None = None
    error_rms: float | None = None  # the RMS of ``error`` (measured where it is made)

    def warnings(self) -> list[str]:
        """What the user should be told about this result beyond its fit: a foreign image
        (:mod:`~napari_pulse.domain`), an atypical one (:mod:`~napari_pulse.bank`), or an
        intermediate search that left the generator's features."""
        from .intermediate import ood_warning

        found = (
            domain.warning(self.domain_score),
            bank.atypical_warning(self.atypicality),
            ood_warning(self.ood_score),
        )
        return [m for m in found if m]

    def expected_rms(self) -> tuple[float, float] | None:
        """The expected error's RMS over the image, in its units and as a share of the
        intensity range the input was brought to [0, 1] with; None without a map."""
        if self.error is None:
            return None
        norm = self.params.get("normalization") or {"lo": 0.0, "hi": 1.0}
        half = norm["hi"] / 2 - norm["lo"] / 2  # halves: no overflow between huge values
        rms = self.error_rms
        if rms is None:  # never a whole zarr array: streamed results carry their figure
            rms = math.sqrt(squares(self.error, half) / np.size(self.error)) * half
        return rms, rms / 2 / half

    @property
    def mean(self) -> np.ndarray:
        """The mean of the samples (a higher-fidelity, blurrier estimate), as float32
        (float64 for float64 images)."""
        dtype = np.float64 if self.image.dtype == np.float64 else np.float32
        if self.samples is None:
            return self.image.astype(dtype)
        x = self.samples.astype(np.float64)
        scale = float(np.abs(x).max()) or 1.0
        return ((x / scale).mean(axis=0) * scale).astype(dtype)


def psnr(mse: float) -> float:
    """PSNR in dB for data in [0, 1], capped at 100 dB (a perfect match)."""
    return 10 * math.log10(1 / max(mse, 1e-10))


_psnr_array = np.vectorize(psnr, otypes=[float])


@dataclass(frozen=True)
class Frame:
    """The user's array as the pipeline saw it: its layout, intensity map and dtype."""

    layout: Layout
    intensity: Intensity
    dtype: np.dtype
    planes: np.ndarray  # (P, C, h, w) in [0, 1], unclipped

    def to_user(self, x: np.ndarray) -> np.ndarray:
        """``(P, N, C, H, W)`` in [0, 1] to ``(N, *lead, H, W[, 3])`` in the input's units."""
        return cast_like(self.intensity.from_unit(self.layout.from_planes(x)), self.dtype)


def assemble(frame: Frame, job: Job, state: State, setup: Setup, rgb: bool) -> Result:
    """The :class:`Result` of a finished pipeline: the mosaics in the input's units and
    dtype, measured against the input, with the search's scores and ``params``."""
    p, n, (c, h, w) = job.n_planes, job.samples, job.planes.shape[1:]
    f = job.grid.factor
    mosaics = job.crop(state.mosaics.detach().cpu().view(p, n, c, h * f, w * f)).numpy()
    result = _measure(frame, mosaics, job.degrade, job.grid, job.cfg.eps, job.real_box)
    result.error = expected_error(error_model(setup), frame, result.image)
    if result.error is not None:
        half = half_span(frame.intensity)
        result.error_rms = math.sqrt(squares(result.error, half) / result.error.size) * half
    return score(result, frame, job, state, setup, rgb)


def half_span(intensity: Intensity) -> float:
    """Half the input's intensity range (halves: no overflow between huge values)."""
    return intensity.hi / 2 - intensity.lo / 2


def squares(error: np.ndarray, half: float) -> float:
    """The sum of ``(error / half)**2`` in float64: an expected error is a fraction of the
    range, so this never overflows, whatever the units."""
    return float(np.square(np.asarray(error, dtype=np.float64) / half).sum())


def error_model(setup: Setup) -> ErrorModel | None:
    """The expected-error model for the setup's generator, factor and operator, if any."""
    from .error_map import find

    d = setup.degrade
    return find(setup.generator, setup.factor, d.kind, d.sigma)


def expected_error(
    model: ErrorModel | None, frame: Frame, image: np.ndarray, low: np.ndarray | None = None
) -> np.ndarray | None:
    """The expected error of ``image`` (in the input's units, shaped like it) given its
    input ``low`` (planes in [0, 1]; default the frame's); None without a model. float32,
    or float64 for float64 images."""
    if model is None:
        return None
    layout, intensity = frame.layout, frame.intensity
    unit = layout.to_planes(intensity.to_unit(image))
    e = model.map(unit, frame.planes if low is None else low)
    out = layout.from_planes(e[:, None])[0] * half_span(intensity) * 2
    return out.astype(np.float64 if frame.dtype == np.float64 else np.float32)


def score(result: Result, frame: Frame, job: Job, state: State, setup: Setup, rgb: bool) -> Result:
    """``result`` (its pixels measured against the input) given the search's per-tile
    scores, the domain's verdict and ``params``; needs no mosaics in ``state``."""
    p = job.n_planes
    layout, grid, t = frame.layout, job.grid, len(job.grid)
    result.ood_tiles = layout.per_tile(
        state.chosen.ood[:, 0].cpu().numpy().reshape(p, t), "max", grid.shape
    )
    result.ood_score = float(result.ood_tiles.max())
    if state.bank is not None:
        atyp = bank.atypicality(state.bank, job.lr_tiles).cpu().numpy().reshape(p, t)
        result.atypical_tiles = layout.per_tile(atyp, "max", grid.shape)
        result.atypicality = float(np.median(result.atypical_tiles))
    model = domain.for_job(setup, job)
    if model is not None:
        dist = model.distances(job.lr_tiles).numpy().reshape(p, t)
        result.domain_tiles = layout.per_tile(dist, "max", grid.shape)
        result.domain_score = float(dist.mean())
        result.in_domain = result.domain_score <= 1
    result.params = params(frame, job, state, setup, rgb)
    errors = error_model(setup) if result.error is not None else None
    result.params["error_map"] = None if errors is None or errors.path is None else errors.path.name
    result.params["domain"] = (
        None
        if model is None
        else {
            "score": result.domain_score,
            "in_domain": result.in_domain,
            "model": model.path.name if model.path else None,
            "cut": model.cut,
        }
    )
    return result


def params(frame: Frame, job: Job, state: State, setup: Setup, rgb: bool) -> dict[str, Any]:
    """Everything needed to reproduce a result."""
    cfg, gen, grid = job.cfg, setup.generator, job.grid
    inter = {**setup.intermediate.__dict__, "layers": list(setup.layers)}
    latent_mse = state.chosen.latent_mse.view(job.n_planes, len(grid)).cpu().numpy()
    source = getattr(gen, "source_file", None)
    return {
        "generator": gen.name,
        # A file's card may name it anything: where it came from, and its weights' hash.
        "generator_file": None if source is None else str(source),
        "generator_sha256": bank.fingerprint(gen),
        "generator_resolution": list(gen.resolution),
        "factor": setup.factor,
        "degradation": setup.degrade.kind,
        "sigma": setup.degrade.sigma,
        "steps": cfg.steps,
        "restarts": cfg.restarts,
        "samples": cfg.samples,
        "seed": setup.seed,
        "eps": cfg.eps,
        "normalization": frame.intensity.as_dict(),
        "rgb": rgb,
        "channel_conversion": frame.layout.conversion(gen),
        "tiles": {
            "grid": list(grid.shape),
            "tile": list(grid.tile),
            "overlap": grid.overlap,
            # low-res pixels of reflected border above and left of the image (the grid's
            # origins count from there; see tiling.border)
            "border": [job.real_box[0], job.real_box[2]],
        },
        "blend_steps": cfg.blend_steps_for(len(grid)) if len(grid) > 1 else 0,
        "blend_lr": cfg.blend_lr_for(len(grid)),
        "mode": setup.mode,
        "quick_wave_tiles_at_eps": state.at_eps.get("quick"),
        "tiles_at_eps_after": dict(state.at_eps),
        "passes_per_tile": _passes(state.passes),
        "intermediate": inter if setup.mode == "intermediate" else None,
        "latent_phase_tile_lr_psnr": _psnr_array(latent_mse).tolist(),
        "search": dict(cfg.__dict__),
        "precision": "float32" if job.render.fast is None else str(job.render.fast).split(".")[1],
        "device": str(setup.device),
        "napari_pulse": __version__,
        "torch": torch.__version__,
    }


def _passes(passes: torch.Tensor | None) -> dict[str, float] | None:
    """Generator passes spent per tile (and sample): median, max and mean."""
    if passes is None or not len(passes):
        return None
    p = passes.double()
    return {"median": float(p.median()), "max": float(p.max()), "mean": float(p.mean())}


#: The spread's window: a Gaussian of sigma this many low-res pixels (x4: 2 high-res pixels).
SPREAD_SIGMA = 0.5


def _spread(out: np.ndarray, layout: Layout, factor: int) -> np.ndarray:
    """The local spread of the samples ``(N, ...)``: their per-pixel variance, averaged
    over a Gaussian window of :data:`SPREAD_SIGMA` low-res pixels within each plane and
    channel, square-rooted. A few samples give a noisy per-pixel estimate (4 samples:
    about 40% relative error); pooled, it ranks the actual error of their mean better
    (``bench/spread.py``: a rank correlation of 0.375 against 0.266 on 20 held-out crops
    at x4 with 4 samples). float32, or float64 for float64 images; scaled, so that huge
    values cannot overflow."""
    return local_spread(out, layout, factor, float(np.abs(out.astype(np.float64)).max()))


def local_spread(out: np.ndarray, layout: Layout, factor: int, scale: float) -> np.ndarray:
    """:func:`_spread` with the samples divided by ``scale`` (their largest magnitude; the
    spread of a window of a large output takes the whole output's)."""
    x = out.astype(np.float64)
    scale = scale or 1.0
    var = torch.from_numpy(layout.to_planes((x / scale).var(axis=0)))  # (P, C, H, W)
    pooled = gaussian_mean(var, SPREAD_SIGMA * factor).numpy()
    std = np.sqrt(layout.from_planes(pooled[:, None])[0]) * scale
    return std.astype(np.float64 if out.dtype == np.float64 else np.float32)


def gaussian_mean(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The Gaussian-weighted mean (sigma in pixels) of ``x`` ``(P, C, H, W)`` around every
    pixel, over the pixels inside the image (the weights renormalised at its edges)."""
    r = max(1, math.ceil(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype) / sigma) ** 2)
    k = k / k.sum()
    p, c, h, w = x.shape
    flat = x.reshape(p * c, 1, h, w)
    ones = torch.ones((1, 1, h, w), dtype=x.dtype)

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = torch.nn.functional.conv2d(t, k.view(1, 1, -1, 1), padding=(r, 0))
        return torch.nn.functional.conv2d(t, k.view(1, 1, 1, -1), padding=(0, r))

    return (blur(flat) / blur(ones)).reshape(p, c, h, w)


def _measure(
    frame: Frame,
    mosaics: np.ndarray,
    degrade: Degradation,
    grid: TileGrid,
    eps: float,
    real: tuple[int, int, int, int],
) -> Result:
    """Cast the mosaics (cut to the user's pixels, which lie at ``real`` in the grid's
    low-res frame) to the input's units and dtype, and measure them against the input."""
    n_planes, n_samples = mosaics.shape[:2]
    layout, planes = frame.layout, frame.planes
    out = frame.to_user(mosaics)  # (N, ...)
    # Judge what the user gets: the cast output, brought back to [0, 1] and downscaled.
    back = np.stack([layout.to_planes(u) for u in frame.intensity.to_unit(out)])
    with torch.no_grad():
        lr = degrade(torch.from_numpy(back).flatten(0, 1).to(degrade.taps.device)).cpu().numpy()
    lr = lr.reshape(n_samples, n_planes, *lr.shape[1:])
    err = (lr - planes[None]) ** 2  # against the unclipped input
    sample_mse = [float(e.mean()) for e in err]
    return fitted(
        out[0],
        err[0],
        sample_mse,
        layout,
        grid,
        eps,
        real,
        samples=out if n_samples > 1 else None,
        std=_spread(out, layout, grid.factor) if n_samples > 1 else None,
    )


def fitted(
    image: Any,
    err: np.ndarray,
    sample_mse: list[float],
    layout: Layout,
    grid: TileGrid,
    eps: float,
    real: tuple[int, int, int, int],
    samples: Any = None,
    std: Any = None,
) -> Result:
    """A result from its pixels and their fit: ``err`` is the best sample's squared
    low-res error ``(P, C, h, w)`` on the user's pixels (at ``real`` in the grid's frame),
    ``sample_mse`` every sample's mean of it."""
    th, tw = grid.tile
    ry, rx = real[0], real[2]
    tile_mse = np.array(
        [
            [
                err[p, :, max(y - ry, 0) : y + th - ry, max(x - rx, 0) : x + tw - rx].mean()
                for (y, x) in grid.origins
            ]
            for p in range(err.shape[0])
        ]
    )
    tile_mse = layout.per_tile(tile_mse, "mean", grid.shape)
    return Result(
        image=image,
        lr_psnr=psnr(sample_mse[0]),
        lr_mse=sample_mse[0],
        success=sample_mse[0] <= eps,
        lr_psnr_tiles=_psnr_array(tile_mse),
        success_tiles=tile_mse <= eps,
        params={},
        samples=samples,
        std=std,
        sample_lr_psnr=[psnr(m) for m in sample_mse],
    )
