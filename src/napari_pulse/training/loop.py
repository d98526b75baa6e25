"""The StyleGAN2 training loop: non-saturating loss, lazy R1, DiffAugment, EMA, resume.

Checkpoints (``<out>.ckpt.pt``, tensors and plain numbers only, read back with
``weights_only=True``) hold both networks, both optimisers, the EMA generator, the step and
the random states, so that a run stopped at any time resumes where its last checkpoint
left it. At every checkpoint the EMA generator is also written in the native format to
``out`` (with its model card) and a PNG grid of samples from fixed latents to
``<out>.samples/step-XXXXXXX.png``.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..generators.base import ModelCard
from ..generators.native import save_native
from ..generators.stylegan2 import StyleGAN2, StyleGAN2Config, gaussian_fit
from .checkpoint import resume_from
from .data import CropRule, CropSampler, list_images
from .diffaug import diff_augment
from .discriminator import Discriminator


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in the checkpoint and the model card."""

    images: str
    out: str
    name: str = "generator"
    domain: str = "generic"
    resolution: int = 64
    channels: int = 1
    style_dim: int = 128
    n_mlp: int = 4
    widths: dict[int, int] = field(default_factory=lambda: {4: 128, 8: 128, 16: 64, 32: 32, 64: 16})
    normalization: str = "percentile"
    crop_level: float = 0.25
    crop_min_fraction: float = 0.05
    crop_any_share: float = 0.1
    crop_dark: bool = False  # content darker than the background (brightfield)
    holdout: float = 0.1
    batch: int = 32
    steps: int = 20000
    lr: float = 0.002
    r1_gamma: float = 0.1
    r1_every: int = 16
    mixing: float = 0.9
    ema_half_life_kimg: float = 10.0
    diffaugment: bool = True
    seed: int = 0
    checkpoint_every: int = 500
    device: str = "cpu"
    threads: int = 0  # 0: leave torch's default
    pixel_size_um: float | None = None
    training_data: str = ""
    license: str = ""

    def model_config(self) -> StyleGAN2Config:
        widths = {k: v for k, v in self.widths.items() if k <= self.resolution}
        return StyleGAN2Config(
            self.resolution, self.channels, self.style_dim, self.n_mlp, widths=widths
        )


@dataclass
class TrainProgress:
    step: int
    steps: int
    d_loss: float
    g_loss: float
    r1: float
    images_per_s: float


def _paths(out: Path) -> tuple[Path, Path]:
    return out.with_name(out.stem + ".ckpt.pt"), out.with_name(out.stem + ".samples")


def _latents(cfg: TrainConfig, n: int, mixing: float, device) -> list[torch.Tensor]:
    """One batch of z, or two for style mixing (with probability ``mixing``)."""
    z = torch.randn(n, cfg.style_dim, device=device)
    if mixing > 0 and float(torch.rand(())) < mixing:
        return [z, torch.randn(n, cfg.style_dim, device=device)]
    return [z]


def _generate(g: StyleGAN2, zs: list[torch.Tensor]) -> torch.Tensor:
    ws = [g.mapping(z) for z in zs]
    w = ws[0][:, None].expand(-1, g.n_latent, -1)
    if len(ws) == 2:
        cut = int(torch.randint(1, g.n_latent, ()))
        w = torch.cat([w[:, :cut], ws[1][:, None].expand(-1, g.n_latent - cut, -1)], 1)
    return g.synthesis(w, randomize_noise=True)


def save_grid(images: torch.Tensor, path: Path, cols: int = 8) -> None:
    """Images in [-1, 1] ``(N, C, H, W)`` as one PNG grid."""
    x = ((images.detach().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    n, c, h, w = x.shape
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * (h + 2), cols * (w + 2), c), np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[r * (h + 2) + 1 : r * (h + 2) + 1 + h, k * (w + 2) + 1 : k * (w + 2) + 1 + w] = x[
            i
        ].transpose(1, 2, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if c == 1 else grid).save(path)


def train(cfg: TrainConfig, on_progress: Callable[[TrainProgress], None] | None = None) -> Path:
    """Train (or resume) and return the path of the native generator file."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    ckpt_path, samples_dir = _paths(out)
    device = torch.device(cfg.device)
    files = list_images(cfg.images, cfg.holdout, "train")
    rule = CropRule(cfg.crop_level, cfg.crop_min_fraction, cfg.crop_any_share, dark=cfg.crop_dark)
    data = CropSampler(files, cfg.resolution, cfg.channels, cfg.normalization, rule, seed=cfg.seed)
    mcfg = cfg.model_config()
    torch.manual_seed(cfg.seed)
    g, d = StyleGAN2(mcfg).to(device), Discriminator(mcfg).to(device)
    g_ema = copy.deepcopy(g).eval().requires_grad_(False)
    d_ratio = cfg.r1_every / (cfg.r1_every + 1)
    g_opt = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(d.parameters(), lr=cfg.lr * d_ratio, betas=(0.0, 0.99**d_ratio))
    fixed_z = torch.randn(32, cfg.style_dim, generator=torch.Generator().manual_seed(1))
    step = _resume(cfg, ckpt_path, device, g, d, g_ema, g_opt, d_opt, data)
    beta_half = cfg.ema_half_life_kimg * 1000
    t0, seen0 = time.perf_counter(), step * cfg.batch
    r1_val = 0.0
    while step < cfg.steps:
        real = torch.from_numpy(data.batch(cfg.batch)).to(device)
        aug = diff_augment if cfg.diffaugment else (lambda x: x)
        # Discriminator.
        with torch.no_grad():
            fake = _generate(g, _latents(cfg, cfg.batch, cfg.mixing, device))
        d_loss = F.softplus(d(aug(fake))).mean() + F.softplus(-d(aug(real))).mean()
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        if step % cfg.r1_every == 0:
            real.requires_grad_(True)
            pred = d(aug(real))
            (grad,) = torch.autograd.grad(pred.sum(), real, create_graph=True)
            r1 = grad.pow(2).flatten(1).sum(1).mean()
            d_opt.zero_grad(set_to_none=True)
            (cfg.r1_gamma / 2 * r1 * cfg.r1_every + 0 * pred[0, 0]).backward()
            d_opt.step()
            r1_val = float(r1.detach())
        # Generator.
        fake = _generate(g, _latents(cfg, cfg.batch, cfg.mixing, device))
        g_loss = F.softplus(-d(aug(fake))).mean()
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        # Exponential moving average, with a ramp-up early in training.
        seen = (step + 1) * cfg.batch
        half = min(beta_half, seen * 0.05)
        beta = 0.5 ** (cfg.batch / max(half, 1e-8))
        _average(g_ema, g, beta)
        step += 1
        if on_progress is not None:
            rate = (seen - seen0) / max(time.perf_counter() - t0, 1e-9)
            on_progress(
                TrainProgress(
                    step, cfg.steps, float(d_loss.detach()), float(g_loss.detach()), r1_val, rate
                )
            )
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _checkpoint(cfg, step, g, d, g_ema, g_opt, d_opt, data, ckpt_path)
            with torch.no_grad():
                g_ema.eval()
                grid = g_ema(fixed_z.to(device), randomize_noise=False)
                save_grid(grid, samples_dir / f"step-{step:07d}.png")
            _export(cfg, g_ema, data, step, out)
    return out


def _resume(cfg, path: Path, device, g, d, g_ema, g_opt, d_opt, data: CropSampler) -> int:
    """Load the checkpoint at ``path`` into the models, optimisers and data stream, when it
    exists; returns the step to go on from (0 without one)."""
    if not path.exists():
        return 0
    return resume_from(
        path, device, lambda state: _restore(state, cfg, g, d, g_ema, g_opt, d_opt, data)
    )


def _restore(state: dict, cfg, g, d, g_ema, g_opt, d_opt, data: CropSampler) -> int:
    if state["config"]["resolution"] != cfg.resolution or state["config"]["widths"] != {
        str(k): v for k, v in cfg.widths.items()
    }:
        raise ValueError("it was made with another model configuration")
    g.load_state_dict(state["g"])
    d.load_state_dict(state["d"])
    g_ema.load_state_dict(state["g_ema"])
    g_opt.load_state_dict(state["g_opt"])
    d_opt.load_state_dict(state["d_opt"])
    torch.set_rng_state(state["torch_rng"])
    data.rng = np.random.default_rng(int(state["data_seed"]))
    return int(state["step"])


def _average(g_ema: torch.nn.Module, g: torch.nn.Module, beta: float) -> None:
    """One step of the generator's exponential moving average (buffers copied)."""
    with torch.no_grad():
        for pe, p in zip(g_ema.parameters(), g.parameters(), strict=True):
            pe.lerp_(p, 1 - beta)
        for be, b in zip(g_ema.buffers(), g.buffers(), strict=True):
            be.copy_(b)


def _checkpoint(cfg, step, g, d, g_ema, g_opt, d_opt, data: CropSampler, path: Path) -> None:
    state = {
        "config": {**asdict(cfg), "widths": {str(k): v for k, v in cfg.widths.items()}},
        "step": step,
        "g": g.state_dict(),
        "d": d.state_dict(),
        "g_ema": g_ema.state_dict(),
        "g_opt": g_opt.state_dict(),
        "d_opt": d_opt.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "data_seed": int(data.rng.integers(2**62)),
    }
    tmp = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, tmp)
    tmp.replace(path)


def _export(cfg: TrainConfig, g_ema: StyleGAN2, data: CropSampler, step: int, out: Path) -> None:
    net = copy.deepcopy(g_ema).cpu()
    made = {
        "tool": "napari-pulse train",
        "steps": step,
        "images_seen": step * cfg.batch,
        "settings": {k: v for k, v in asdict(cfg).items() if k not in ("out",)},
        "data": data.describe(),
        "holdout": f"files whose sha256(name) falls in the first {cfg.holdout:.0%} are held out",
    }
    made["settings"]["widths"] = {str(k): v for k, v in cfg.widths.items()}
    card = ModelCard(
        name=cfg.name,
        domain=cfg.domain,
        description=f"StyleGAN2 {cfg.resolution}x{cfg.resolution}, {cfg.channels} channel(s), "
        f"trained by napari-pulse on {Path(cfg.images).name}",
        normalization=cfg.normalization,
        pixel_size_um=cfg.pixel_size_um,
        training_data=cfg.training_data or str(cfg.images),
        license=cfg.license,
        extra={"training": json.loads(json.dumps(made, default=str))},
    )
    save_native(out, net, card, gaussian_fit(net, n=50_000))
