"""Latents to images in the search's terms: [0, 1], the input's channels, cropped to a tile."""

from __future__ import annotations

import torch

from .generators.base import DomainGenerator

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601: how an RGB generator's image becomes grayscale


class Renderer:
    """Latents -> generator images in [0, 1] with the input's channels, cropped to the tile."""

    def __init__(self, generator: DomainGenerator, channels: int, crop: tuple[int, int]) -> None:
        self.g = generator
        self.channels = channels
        gh, gw = generator.resolution
        self.crop = crop
        self.offset = ((gh - crop[0]) // 2, (gw - crop[1]) // 2)

    def __call__(
        self,
        z: torch.Tensor,
        noise: list[torch.Tensor] | None,
        offsets: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if offsets:  # feature-map offsets of the intermediate search
            x = (self.g.synthesize(z, noise, offsets=offsets) + 1) / 2
        else:
            x = (self.g.synthesize(z, noise) + 1) / 2
        if self.g.channels == 3 and self.channels == 1:
            luma = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x * luma).sum(dim=1, keepdim=True)
        oy, ox = self.offset
        return x[..., oy : oy + self.crop[0], ox : ox + self.crop[1]]

    @property
    def vector_dim(self) -> int:
        """The dim at which latent vectors start in a ``(rows, *latent_shape)`` batch."""
        return len(self.g.latent_shape)

    @property
    def uses_geocross(self) -> bool:
        """Whether GEOCROSS applies to this generator's latents (per-layer, and asked for)."""
        return self.g.layered and self.g.geocross
