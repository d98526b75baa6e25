"""Latents to images in the search's terms: [0, 1], the input's channels, cropped to a tile."""

from __future__ import annotations

import torch

from .generators.base import DomainGenerator

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601: how an RGB generator's image becomes grayscale


#: Search precisions (:attr:`SearchConfig.precision <napari_pulse.search.SearchConfig>`).
PRECISIONS = ("auto", "float32", "bfloat16")


def native_bfloat16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CPU with AVX512-BF16 or AMX. On this
    project's 2-core CPU (AVX512-BF16) the nuclei generator's forward and backward at 64
    images runs 1.98x faster in bfloat16 (``bench/precision.py``: 968 against 489 images/s).
    GPUs: not measured yet."""
    if torch.device(device).type != "cpu":
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def pass_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of the search's passes for a precision setting (None: float32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bfloat16" or (precision == "auto" and native_bfloat16(device)):
        return torch.bfloat16
    return None


class Renderer:
    """Latents -> generator images in [0, 1] with the input's channels, cropped to the tile.

    With ``fast`` (an autocast dtype, see :func:`pass_dtype`), the search's passes (those
    that need gradients) run in that dtype and return float32; every pass without
    gradients, which is how the images of a result are made, runs in float32."""

    def __init__(
        self,
        generator: DomainGenerator,
        channels: int,
        crop: tuple[int, int],
        fast: torch.dtype | None = None,
    ) -> None:
        self.g = generator
        self.channels = channels
        gh, gw = generator.resolution
        self.crop = crop
        self.offset = ((gh - crop[0]) // 2, (gw - crop[1]) // 2)
        self.fast = fast

    def __call__(
        self,
        z: torch.Tensor,
        noise: list[torch.Tensor] | None,
        offsets: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if self.fast is None or not torch.is_grad_enabled():
            return self._render(z, noise, offsets)
        with torch.autocast(z.device.type, dtype=self.fast):
            return self._render(z, noise, offsets).float()

    def _render(
        self,
        z: torch.Tensor,
        noise: list[torch.Tensor] | None,
        offsets: dict[int, torch.Tensor] | None,
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
