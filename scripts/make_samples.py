"""Make the bundled sample images (run from the repository root).

``src/napari_pulse/data/face_lr.png``: the face DCGAN (``gan-face-generate`` weights) at a
fixed latent (seed 7, first draw), mapped to [0, 1], downscaled x8 with our bicubic
operator and quantised to uint8. The 64x64 original goes to ``docs/face_truth.png``.
The face is synthetic: no real person is shown.

``src/napari_pulse/data/nuclei_lr.png``: fluorescence nuclei (Kaggle Data Science Bowl 2018,
BBBC038, CC0) from an image the ``nuclei`` generator never saw in training (held out by
``held_out(name, 0.1)``): the first such file, in name order, whose centred 256x256 crop has
10-40% of its pixels above a quarter of its percentile range, downscaled x4 with our bicubic
operator to 64x64 and rounded to uint8. The 256x256 crop goes to ``docs/nuclei_truth.png``.
Needs ``../shared/data/nuclei``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from napari_pulse.degrade import downscale
from napari_pulse.generators import load
from napari_pulse.intensity import fit_intensity
from napari_pulse.training.data import list_images

SEED = 7
ROOT = Path(__file__).resolve().parents[1]
NUCLEI = ROOT.parent / "shared" / "data" / "nuclei"
to8 = lambda a: np.clip(np.rint(a), 0, 255).astype(np.uint8)  # noqa: E731


def field_sample(name: str, folder: Path, mode: str, accept) -> None:
    """The centred 256x256 crop of the first held-out image ``accept`` takes, x4 down."""
    for path in list_images(folder, 0.1, "holdout"):
        a = np.asarray(Image.open(path).convert(mode), dtype=np.float64)
        if min(a.shape[:2]) < 256:
            continue
        y, x = (a.shape[0] - 256) // 2, (a.shape[1] - 256) // 2
        crop = a[y : y + 256, x : x + 256]
        if accept(crop):
            break
    else:
        raise SystemExit(f"no held-out {name} image fits the rule")
    lr = downscale(crop, 4)
    Image.fromarray(to8(lr)).save(ROOT / f"src/napari_pulse/data/{name}_lr.png")
    Image.fromarray(to8(crop)).save(ROOT / f"docs/{name}_truth.png")
    print(f"wrote {name}_lr.png {lr.shape} from {path.name}")


def nuclei_fits(crop: np.ndarray) -> bool:
    """10-40% of the pixels above a quarter of the percentile range."""
    fg = float((fit_intensity(crop, "percentile").to_unit(crop) > 0.25).mean())
    return 0.1 <= fg <= 0.4


def main() -> None:
    g = load("faces-dcgan64")
    with torch.no_grad():
        z = g.sample_latents(1, torch.Generator().manual_seed(SEED))
        hr = ((g.synthesize(z)[0] + 1) / 2).clamp(0, 1).permute(1, 2, 0).numpy()
    lr = downscale(hr, 8)
    (ROOT / "docs").mkdir(exist_ok=True)
    Image.fromarray(to8(lr * 255)).save(ROOT / "src/napari_pulse/data/face_lr.png")
    Image.fromarray(to8(hr * 255)).save(ROOT / "docs/face_truth.png")
    print("wrote face_lr.png", lr.shape, "and docs/face_truth.png", hr.shape)
    field_sample("nuclei", NUCLEI, "L", nuclei_fits)


if __name__ == "__main__":
    main()
