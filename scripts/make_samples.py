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

``src/napari_pulse/data/histology_lr.png``: an H&E field (same release, the brightfield
tiles) from an image the ``histology`` generator never saw (``held_out(name, 0.1)``): the
first such file, in name order, whose centred 256x256 crop is stained in colour (the mean
spread between a pixel's largest and smallest channel is at least 0.1 of full scale) and
has 20-60% of its pixels (mean over channels) darker than 0.75 of full scale, downscaled
x4 with our bicubic operator to 64x64 RGB and rounded to uint8. The 256x256 crop goes to
``docs/histology_truth.png``.
Needs ``../shared/data/histology``.
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
HISTOLOGY = ROOT.parent / "shared" / "data" / "histology"
to8 = lambda a: np.clip(np.rint(a), 0, 255).astype(np.uint8)  # noqa: E731


def nuclei_sample() -> None:
    for path in list_images(NUCLEI, 0.1, "holdout"):
        a = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
        if min(a.shape) < 256:
            continue
        y, x = (a.shape[0] - 256) // 2, (a.shape[1] - 256) // 2
        crop = a[y : y + 256, x : x + 256]
        fg = float((fit_intensity(crop, "percentile").to_unit(crop) > 0.25).mean())
        if 0.1 <= fg <= 0.4:
            break
    else:
        raise SystemExit("no held-out nuclei image fits the rule")
    lr = downscale(crop, 4)
    Image.fromarray(to8(lr)).save(ROOT / "src/napari_pulse/data/nuclei_lr.png")
    Image.fromarray(to8(crop)).save(ROOT / "docs/nuclei_truth.png")
    print(f"wrote nuclei_lr.png {lr.shape} from {path.name} (foreground {fg:.2f})")


def histology_sample() -> None:
    for path in list_images(HISTOLOGY, 0.1, "holdout"):
        a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        if min(a.shape[:2]) < 256:
            continue
        y, x = (a.shape[0] - 256) // 2, (a.shape[1] - 256) // 2
        crop = a[y : y + 256, x : x + 256]
        dark = float((crop.mean(axis=-1) / 255 < 0.75).mean())
        colour = float((crop.max(axis=-1) - crop.min(axis=-1)).mean() / 255)
        if colour >= 0.1 and 0.2 <= dark <= 0.6:
            break
    else:
        raise SystemExit("no held-out histology image fits the rule")
    lr = downscale(crop, 4)
    Image.fromarray(to8(lr)).save(ROOT / "src/napari_pulse/data/histology_lr.png")
    Image.fromarray(to8(crop)).save(ROOT / "docs/histology_truth.png")
    print(f"wrote histology_lr.png {lr.shape} from {path.name} (dark {dark:.2f})")


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
    nuclei_sample()
    histology_sample()


if __name__ == "__main__":
    main()
