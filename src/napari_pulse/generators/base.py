"""The generator protocol: what the latent search needs to know about a domain generator."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class ModelCard:
    """Facts about a generator that users and the search need (kept next to its weights)."""

    name: str
    domain: str = "generic"
    description: str = ""
    #: How the generator's training images were brought to [0, 1]:
    #: "percentile" (1st..99.8th, microscopy) or "range" (dtype range, photographs).
    normalization: str = "range"
    pixel_size_um: float | None = None
    training_data: str = ""
    license: str = ""
    extra: dict = field(default_factory=dict)


class DomainGenerator(nn.Module):
    """A pretrained generator seen through the eyes of the latent search.

    Subclasses set ``resolution`` (H, W), ``channels`` (1 or 3), ``latent_shape``
    (``(D,)`` for one vector, ``(L, D)`` for one vector per layer) and implement
    :meth:`synthesize`. Latents live in the *search space*: standard normal, each
    vector kept on the sphere of radius sqrt(D). A generator with a mapping network
    applies its Gaussianised parameterisation inside :meth:`synthesize`, so the search
    knows nothing about architectures.
    """

    resolution: tuple[int, int]
    channels: int
    latent_shape: tuple[int, ...]
    card: ModelCard
    #: Whether GEOCROSS applies: True where realistic latents share one vector across
    #: layers (StyleGAN's W+ search); False where the prior draws layers independently.
    geocross: bool = False

    def sample_latents(self, n: int, rng: torch.Generator) -> torch.Tensor:
        """Draw ``n`` initial latents (on CPU, float32) from the search-space prior."""
        return torch.randn((n, *self.latent_shape), generator=rng)

    def noise_shapes(self) -> list[tuple[int, ...]]:
        """Shapes (per sample) of noise inputs that the search may optimise; none by default."""
        return []

    def feature_shapes(self) -> list[tuple[int, ...]]:
        """Shapes (per sample) of the intermediate feature maps that the intermediate search
        may shift, first layer first; none by default (then only the latent is searched)."""
        return []

    def synthesize(
        self,
        latents: torch.Tensor,
        noise: list[torch.Tensor] | None = None,
        offsets: dict[int, torch.Tensor] | None = None,
        features: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Images ``(N, channels, H, W)`` in [-1, 1] for latents ``(N, *latent_shape)``.

        ``offsets[k]`` (``(N, *feature_shapes()[k])``) is added to feature map ``k``;
        ``features``, when given a list, receives every feature map before its offset.
        """
        raise NotImplementedError

    def feature_scales(self, n: int = 64, seed: int = 0) -> list[float]:
        """Root-mean-square of each feature map over ``n`` prior draws (cached)."""
        cached = getattr(self, "_feature_scales", None)
        if cached is None:
            rng = torch.Generator().manual_seed(seed)
            z = self.sample_latents(n, rng)
            noise = [torch.randn((n, *s), generator=rng) for s in self.noise_shapes()]
            feats: list[torch.Tensor] = []
            device = next(self.buffers(), next(self.parameters(), torch.empty(0))).device
            with torch.no_grad():
                self.synthesize(z.to(device), [x.to(device) for x in noise] or None, features=feats)
            cached = [max(float(f.pow(2).mean().sqrt()), 1e-6) for f in feats]
            self._feature_scales = cached
        return cached

    @property
    def layered(self) -> bool:
        """True when the latent holds one vector per layer."""
        return len(self.latent_shape) == 2

    @property
    def name(self) -> str:
        return self.card.name

    def describe(self) -> str:
        h, w = self.resolution
        return f"{self.card.name}: {h}x{w}, {self.channels} channel(s), latent {self.latent_shape}"
