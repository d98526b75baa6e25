"""Training an encoder for one generator, factor and degradation (``napari-pulse train-encoder``).

Two phases, both on the search's own terms (the Renderer, the Degradation, the low-res
tile as the user has it: quantised to 8 bits):

1. **Generator draws** (``draw_steps``): latents from the generator's prior (one vector
   for all layers, or two mixed at a random layer), their noise, and the low-res image
   they make. The loss is the latent's cosine error (per latent vector) plus the low-res
   error of D(G(E(y))) with fresh noise.
2. **Real crops** (``real_steps``, when an image folder is given): crops of the
   generator's size from the training part of the folder (the held-out share is never
   read), normalised as ``upscale`` normalises them, degraded and quantised. The loss is
   the search's objective alone, the low-res error of D(G(E(y))): no high-res truth is
   needed.

Every ``checkpoint_every`` steps the run is saved beside the output (``<out>.ckpt.pt``;
tensors and plain numbers, read back with ``weights_only=True``), so that running the same
command again resumes it; the encoder file (:mod:`napari_pulse.encoder`) is written at the
end, with a card that records the generator's fingerprint, the data, settings and seed.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import encoder as encoders
from ..bank import fingerprint
from ..degrade import Degradation
from ..generators import load
from ..optim import cosine, project_to_sphere
from ..render import Renderer
from .checkpoint import resume_from
from .data import CropRule, CropSampler, list_images


@dataclass
class EncoderConfig:
    """Everything an encoder's training depends on (stored in its checkpoint and card)."""

    generator: str
    factor: int = 4
    degradation: str = "bicubic"
    sigma: float | None = None
    images: str | None = None  # a folder of real images for phase 2; None: draws only
    out: str | None = None  # default: beside the generator's file, else the cache directory
    holdout: float = 0.1
    normalization: str | None = None  # default: the generator's own convention
    draw_steps: int = 2000
    real_steps: int = 2000
    batch: int = 32
    lr: float = 5e-4
    latent_weight: float = 1.0  # weight of the latent's cosine error in phase 1
    mixing: float = 0.5  # share of phase-1 draws whose latent mixes two vectors
    real_any_share: float = 0.5  # share of real crops kept whatever they hold
    width: int = 32  # of the first convolutions (doubled at each stride, to 4x)
    hidden: int = 512  # of the hidden linear layer
    seed: int = 0
    checkpoint_every: int = 250
    threads: int = 0  # 0: leave torch's default
    device: str = "cpu"
    #: The encoder rung's budget that upscale uses with this encoder where the user sets
    #: none (kept in the card; None: the search's general default). Measure it for the
    #: generator: its fits may settle at once past eps (nuclei) or go on improving (faces).
    rung_starts: int | None = None
    rung_steps: int | None = None
    rung_patience: int | None = None

    @property
    def rung(self) -> dict[str, int]:
        """The rung budget the card records (only what was set)."""
        held = {k: getattr(self, f"rung_{k}") for k in encoders.RUNG_KEYS}
        return {k: v for k, v in held.items() if v is not None}

    @property
    def steps(self) -> int:
        return self.draw_steps + (self.real_steps if self.images else 0)


@dataclass
class EncoderProgress:
    phase: str  # "draws" or "real"
    step: int
    steps: int
    loss: float
    lr_psnr: float  # of the last batch's D(G(E(y))) against y
    seconds: float


class _Setting:
    """The generator, renderer, degradation and encoder of a run."""

    def __init__(self, cfg: EncoderConfig) -> None:
        self.device = torch.device(cfg.device)
        self.gen = load(cfg.generator).to(self.device)
        g = self.gen
        self.render = Renderer(g, g.channels, g.resolution)
        self.degrade = Degradation(cfg.degradation, cfg.factor, cfg.sigma).to(self.device)
        h, w = g.resolution
        self.low_shape = (g.channels, h // cfg.factor, w // cfg.factor)
        torch.manual_seed(cfg.seed)
        enc = encoders.Encoder(self.low_shape, g.latent_shape, cfg.width, cfg.hidden)
        self.enc = enc.to(self.device)

    def low(self, hr: torch.Tensor) -> torch.Tensor:
        """High-res images in [0, 1] as the user's low-res tiles (8-bit)."""
        return torch.round(self.degrade(hr).clamp(0, 1) * 255) / 255

    def noise(self, n: int, rng: torch.Generator | None = None) -> list[torch.Tensor]:
        shapes = self.gen.noise_shapes()
        return [torch.randn((n, *s), generator=rng).to(self.device) for s in shapes] or None

    def fit_error(self, low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's guesses for ``low`` and the low-res MSE of their images."""
        guess = self.enc(low)
        mse = (self.degrade(self.render(guess, self.noise(len(low)))) - low).pow(2).flatten(1)
        return guess, mse.mean(1)


def _draws(s: _Setting, n: int, mixing: float, rng: torch.Generator):
    """Prior latents (on the sphere) and the low-res tiles they make."""
    g = s.gen
    z = g.sample_latents(n, rng)
    if g.layered:  # one vector for all layers, as the generator was trained, or two mixed
        z = z[:, :1].expand_as(z).clone()
        cut = torch.randint(1, z.shape[1], (n,), generator=rng)
        other = g.sample_latents(n, rng)[:, :1]
        mixed = torch.rand(n, generator=rng) < mixing
        for i in torch.nonzero(mixed).flatten().tolist():
            z[i, cut[i] :] = other[i]
    z = project_to_sphere(z, len(g.latent_shape)).to(s.device)
    with torch.no_grad():
        low = s.low(s.render(z, s.noise(n, rng)))
    return z, low


def _real(cfg: EncoderConfig, s: _Setting) -> tuple[CropSampler, list[Path]]:
    files = list_images(cfg.images, cfg.holdout, "train")
    norm = cfg.normalization or s.gen.card.normalization
    rule = CropRule(any_share=cfg.real_any_share)
    h = s.gen.resolution[0]
    return CropSampler(files, h, s.gen.channels, norm, rule, jitter=0.0, seed=cfg.seed), files


def output_path(cfg: EncoderConfig) -> Path:
    """Where the encoder goes: ``out``, else beside the generator's file (never inside the
    installed package), else the cache directory."""
    if cfg.out:
        return Path(cfg.out)
    return encoders.writable_place(load(cfg.generator), cfg.factor, cfg.degradation, cfg.sigma)


def train_encoder(
    cfg: EncoderConfig, on_progress: Callable[[EncoderProgress], None] | None = None
) -> Path:
    """Train (or resume) an encoder; returns the path of the encoder file."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = output_path(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt = out.with_name(out.name.replace(".safetensors", ".ckpt.pt"))
    s = _Setting(cfg)
    opt = torch.optim.Adam(s.enc.parameters(), lr=cfg.lr)
    real = _real(cfg, s) if cfg.images else None
    rng = torch.Generator().manual_seed(cfg.seed)
    step, last = _resume(ckpt, s, opt, rng)
    t0 = time.perf_counter()
    while step < cfg.steps:
        phase = "draws" if step < cfg.draw_steps else "real"
        for group in opt.param_groups:
            group["lr"] = cfg.lr * _schedule(cfg, step)
        if phase == "draws":
            z, low = _draws(s, cfg.batch, cfg.mixing, rng)
            guess, mse = s.fit_error(low)
            latent = (1 - F.cosine_similarity(guess, z, dim=-1)).mean()
            loss = cfg.latent_weight * latent + 100 * mse.mean()
        else:  # each step's crops from a stream of its own: a resumed run draws the same
            real[0].rng = np.random.default_rng((cfg.seed, step))
            hr = torch.from_numpy(real[0].batch(cfg.batch)).to(s.device)
            low = s.low((hr + 1) / 2)
            _, mse = s.fit_error(low)
            loss = 100 * mse.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        last = {"loss": float(loss.detach()), "lr_psnr": _psnr(float(mse.detach().mean()))}
        if on_progress is not None:
            seconds = time.perf_counter() - t0
            on_progress(EncoderProgress(phase, step, cfg.steps, seconds=seconds, **last))
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _checkpoint(ckpt, cfg, s, opt, rng, step, last)
    card = _card(cfg, s, real, last)
    return encoders.save(out, s.enc.cpu().eval(), card)


def _schedule(cfg: EncoderConfig, step: int) -> float:
    """Half a cosine over each phase (the real phase starts again from the full rate)."""
    if step < cfg.draw_steps:
        return cosine(step, cfg.draw_steps)
    return cosine(step - cfg.draw_steps, cfg.real_steps)


def _psnr(mse: float) -> float:
    return 10 * math.log10(1 / max(mse, 1e-10))


def _checkpoint(path: Path, cfg, s: _Setting, opt, rng, step: int, last: dict) -> None:
    state = {
        "config": asdict(cfg),
        "step": step,
        "last_batch": last,
        "encoder": s.enc.state_dict(),
        "opt": opt.state_dict(),
        "rng": rng.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    torch.save(state, tmp)
    tmp.replace(path)


def _resume(path: Path, s: _Setting, opt, rng) -> tuple[int, dict]:
    """The step to go on from and the last batch's figures (0 and none for a new run)."""
    if not path.exists():
        return 0, {}
    return resume_from(path, s.device, lambda state: _restore(state, s, opt, rng))


def _restore(state: dict, s: _Setting, opt, rng) -> tuple[int, dict]:
    s.enc.load_state_dict(state["encoder"])
    opt.load_state_dict(state["opt"])
    rng.set_state(state["rng"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), dict(state.get("last_batch", {}))


def _card(cfg: EncoderConfig, s: _Setting, real, last: dict) -> dict:
    g = s.gen
    data = {"draws": f"{cfg.draw_steps} steps x {cfg.batch} prior draws (mixing {cfg.mixing})"}
    if real:
        sampler, files = real
        data["images"] = {
            "folder": Path(cfg.images).name,
            "files": len(files),
            "holdout": f"files whose sha256(name) is in the first {cfg.holdout:.0%}: never read",
            **sampler.describe(),
        }
    return {
        "generator": g.name,
        "generator_sha256": fingerprint(g),
        "factor": cfg.factor,
        "degradation": cfg.degradation,
        "sigma": cfg.sigma,
        "training": {"settings": asdict(cfg), "data": data, "last_batch": last},
        **({"rung": cfg.rung} if cfg.rung else {}),
    }
