"""A tiny randomly initialised generator, deterministic for a seed: for tests and demos only.

It is *not* trained: its images are smooth random textures. It has a per-layer latent
``(L, D)`` like StyleGAN's W+, drawn independently per layer (so GEOCROSS is off unless
``geocross=True``), and every code path of the search runs on it in milliseconds.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import DomainGenerator, ModelCard


class TinyGenerator(DomainGenerator):
    """Random style-modulated conv net: ``(N, L, D)`` latents to ``(N, C, R, R)`` images."""

    def __init__(
        self,
        resolution: int = 32,
        channels: int = 1,
        latent_dim: int = 32,
        width: int = 24,
        seed: int = 0,
        name: str = "tiny",
        geocross: bool = False,
    ) -> None:
        super().__init__()
        n_up = int(math.log2(resolution // 4))
        if 4 * 2**n_up != resolution:
            raise ValueError(f"resolution must be 4 * 2^k, got {resolution}")
        self.resolution = (resolution, resolution)
        self.channels = channels
        self.geocross = geocross
        self.latent_shape = (n_up + 1, latent_dim)
        self.card = ModelCard(
            name=name,
            domain="test",
            description="untrained random generator for tests and demos",
            normalization="range",
        )
        gen = torch.Generator().manual_seed(seed)

        def lin(i: int, o: int) -> nn.Linear:
            m = nn.Linear(i, o)
            with torch.no_grad():
                m.weight.copy_(torch.randn(o, i, generator=gen) / math.sqrt(i))
                m.bias.zero_()
            return m

        def conv(i: int, o: int, k: int) -> nn.Conv2d:
            m = nn.Conv2d(i, o, k, padding=k // 2)
            with torch.no_grad():
                m.weight.copy_(torch.randn(o, i, k, k, generator=gen) * math.sqrt(2 / (i * k * k)))
                m.bias.zero_()
            return m

        self.width = width
        self.const = lin(latent_dim, width * 16)
        self.styles = nn.ModuleList(lin(latent_dim, width) for _ in range(n_up))
        self.convs = nn.ModuleList(conv(width, width, 3) for _ in range(n_up))
        self.to_img = conv(width, channels, 1)
        self.requires_grad_(False)
        # Calibrate the output gain once so that images use most of [-1, 1].
        self.register_buffer("gain", torch.ones(()))
        with torch.no_grad():
            z = torch.randn((64, *self.latent_shape), generator=gen)
            pre = self._pre_tanh(z)
            self.gain.fill_(1.0 / float(pre.std()))

    def _pre_tanh(
        self,
        latents: torch.Tensor,
        offsets: dict[int, torch.Tensor] | None = None,
        features: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        # Like StyleGAN's pixel norm: only the direction of each vector matters.
        latents = F.normalize(latents, dim=-1) * math.sqrt(latents.shape[-1])
        x = self.const(latents[:, 0]).view(-1, self.width, 4, 4)
        for i, (style, conv) in enumerate(zip(self.styles, self.convs, strict=True)):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            s = 1 + 0.5 * torch.tanh(style(latents[:, i + 1]))
            x = F.leaky_relu(conv(x * s[:, :, None, None]), 0.2)
            if features is not None:
                features.append(x)
            if offsets and i in offsets:
                x = x + offsets[i]
        return self.to_img(x)

    def feature_shapes(self) -> list[tuple[int, ...]]:
        """The output of every up-sampling block."""
        return [(self.width, 8 * 2**i, 8 * 2**i) for i in range(len(self.convs))]

    def synthesize(
        self,
        latents: torch.Tensor,
        noise: list[torch.Tensor] | None = None,
        offsets: dict[int, torch.Tensor] | None = None,
        features: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        return torch.tanh(self._pre_tanh(latents, offsets, features) * self.gain)
