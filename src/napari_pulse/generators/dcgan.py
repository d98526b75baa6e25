"""The 64x64 DCGAN architecture, and the face generator from the ``gan-face-generate`` package.

The package's weights (MIT licence; trained on the synthetic DigiFace-1M faces) are read
as a plain tensor state dict with ``weights_only=True``; none of that package's code is
imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import DomainGenerator, ModelCard

FACES_INSTALL_HINT = "pip install --no-deps gan-face-generate"


class DCGAN64(DomainGenerator):
    """The PyTorch-tutorial DCGAN generator: z (nz,) -> (channels, 64, 64), batch norm frozen."""

    def __init__(self, card: ModelCard, nz: int = 100, ngf: int = 64, channels: int = 3) -> None:
        super().__init__()
        self.resolution = (64, 64)
        self.channels = channels
        self.latent_shape = (nz,)
        self.card = card

        def up(i: int, o: int, first: bool = False) -> list[nn.Module]:
            conv = nn.ConvTranspose2d(i, o, 4, 1 if first else 2, 0 if first else 1, bias=False)
            return [conv, nn.BatchNorm2d(o), nn.ReLU(True)]

        self.main = nn.Sequential(
            *up(nz, ngf * 8, first=True),
            *up(ngf * 8, ngf * 4),
            *up(ngf * 4, ngf * 2),
            *up(ngf * 2, ngf),
            nn.ConvTranspose2d(ngf, channels, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def feature_shapes(self) -> list[tuple[int, ...]]:
        """The outputs of the four up-convolution blocks (after their ReLU)."""
        shapes, size = [], 4
        for i in range(2, len(self.main) - 2, 3):
            conv = self.main[i - 2]
            shapes.append((conv.out_channels, size, size))
            size *= 2
        return shapes

    def synthesize(
        self,
        latents: torch.Tensor,
        noise: list[torch.Tensor] | None = None,
        offsets: dict[int, torch.Tensor] | None = None,
        features: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        x = latents[:, :, None, None]
        if offsets is None and features is None:
            return self.main(x)
        layer = 0
        for i, module in enumerate(self.main):
            x = module(x)
            if isinstance(module, nn.ReLU) and i < len(self.main) - 2:
                if features is not None:
                    features.append(x)
                if offsets and layer in offsets:
                    x = x + offsets[layer]
                layer += 1
        return x


def faces_weights_path() -> Path | None:
    """Where the ``gan-face-generate`` weights file lies, or None when it is not installed."""
    spec = importlib.util.find_spec("gan_face_generate")  # locates, does not import
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "weights.tar"
        if path.is_file():
            return path
    return None


def is_dcgan(obj: Any) -> bool:
    """Whether a loaded object is a DCGAN64 state dict, bare or under ``netG_state_dict``."""
    state = obj.get("netG_state_dict", obj) if isinstance(obj, dict) else None
    return isinstance(state, dict) and "main.0.weight" in state and "main.12.weight" in state


def dcgan_from_state(obj: dict, card: ModelCard) -> DCGAN64:
    """A frozen :class:`DCGAN64` from a state dict (or a dict holding ``netG_state_dict``)."""
    state = obj.get("netG_state_dict", obj)
    first, last = state["main.0.weight"], state["main.12.weight"]
    model = DCGAN64(card, nz=first.shape[0], ngf=first.shape[1] // 8, channels=last.shape[1])
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    # Channels-last convolutions are faster on CPU (bench/memory_format.py: 1.13x here).
    return model.to(memory_format=torch.channels_last)


def load_dcgan_file(path: str | Path, checkpoint: Any = None) -> DCGAN64:
    """A DCGAN64 from a saved state dict such as gan-face-generate's weights.tar."""
    path = Path(path)
    obj = checkpoint
    if obj is None:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    if not is_dcgan(obj):
        raise ValueError(f"{path.name} is not a DCGAN64 state dict (no main.0/main.12 weights)")
    card = ModelCard(
        name=path.stem,
        description=f"64x64 DCGAN read from {path.name}",
        normalization="range",
        extra={"format": "dcgan", "source": str(path)},
    )
    return dcgan_from_state(obj, card)


def load_faces_dcgan() -> DCGAN64:
    """The 64x64 RGB face generator; a clear error says how to install it when absent."""
    path = faces_weights_path()
    if path is None:
        raise FileNotFoundError(
            "The 'faces-dcgan64' generator needs the weights of the gan-face-generate package. "
            f"Install them with: {FACES_INSTALL_HINT}"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    card = ModelCard(
        name="faces-dcgan64",
        domain="faces",
        description="64x64 RGB faces (DCGAN from the gan-face-generate package)",
        normalization="range",
        training_data="DigiFace-1M synthetic faces (per the gan-face-generate package)",
        license="MIT (gan-face-generate)",
    )
    return dcgan_from_state(checkpoint, card)
