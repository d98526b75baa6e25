"""The 64x64 DCGAN architecture, and the face generator from the ``gan-face-generate`` package.

The package's weights (MIT licence; trained on the synthetic DigiFace-1M faces) are read
as a plain tensor state dict with ``weights_only=True``; none of that package's code is
imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

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

    def synthesize(
        self, latents: torch.Tensor, noise: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        return self.main(latents[:, :, None, None])


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


def load_faces_dcgan() -> DCGAN64:
    """The 64x64 RGB face generator; a clear error says how to install it when absent."""
    path = faces_weights_path()
    if path is None:
        raise FileNotFoundError(
            "The 'faces-dcgan64' generator needs the weights of the gan-face-generate package. "
            f"Install them with: {FACES_INSTALL_HINT}"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint["netG_state_dict"]
    card = ModelCard(
        name="faces-dcgan64",
        domain="faces",
        description="64x64 RGB faces (DCGAN from the gan-face-generate package)",
        normalization="range",
        training_data="DigiFace-1M synthetic faces (per the gan-face-generate package)",
        license="MIT (gan-face-generate)",
    )
    model = DCGAN64(
        card, nz=state["main.0.weight"].shape[0], ngf=state["main.0.weight"].shape[1] // 8
    )
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    return model
