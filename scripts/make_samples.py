"""Make the bundled sample images (run from the repository root).

``src/napari_pulse/data/face_lr.png``: the face DCGAN (``gan-face-generate`` weights) at a
fixed latent (seed 7, first draw), mapped to [0, 1], downscaled x8 with our bicubic
operator and quantised to uint8. The 64x64 original goes to ``docs/face_truth.png``.
The face is synthetic: no real person is shown.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from napari_pulse.degrade import downscale
from napari_pulse.generators import load

SEED = 7
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    g = load("faces-dcgan64")
    with torch.no_grad():
        z = g.sample_latents(1, torch.Generator().manual_seed(SEED))
        hr = ((g.synthesize(z)[0] + 1) / 2).clamp(0, 1).permute(1, 2, 0).numpy()
    lr = downscale(hr, 8)
    to8 = lambda a: np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)  # noqa: E731
    (ROOT / "docs").mkdir(exist_ok=True)
    Image.fromarray(to8(lr)).save(ROOT / "src/napari_pulse/data/face_lr.png")
    Image.fromarray(to8(hr)).save(ROOT / "docs/face_truth.png")
    print("wrote face_lr.png", lr.shape, "and docs/face_truth.png", hr.shape)


if __name__ == "__main__":
    main()
