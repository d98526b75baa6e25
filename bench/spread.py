"""Do the spread and the expected-error map point at the error? Their rank correlation
with the actual error.

The inputs are ``heldout_x4.py``'s: the first ``--n`` crops of held-out images (files the
generator's training never read, foreground by the card's crop rule), downscaled x4
(bicubic) and upscaled with the bundled ``nuclei`` generator, the defaults and
``--samples`` samples. For each crop, the Spearman correlation between a spread map and
the absolute error of the samples' mean against the truth (``metrics.spearman``, the
figure ``napari-pulse evaluate`` reports): the per-pixel standard deviation over the
samples, and their per-pixel variance pooled over Gaussian windows of several widths
(sigma in low-res pixels; ``result.SPREAD_SIGMA`` is what ``Result.std`` ships), then
square-rooted. Then the expected-error map (``Result.error``, :mod:`napari_pulse.error_map`,
fitted on training crops by ``scripts/fit_error_map.py``) against the error of the image it
describes (the best sample, what the user sees) and against the error of the mean, and its
RMS against the image's actual RMS error. Prints the median over the crops of each, and the
mean's PSNR/SSIM.

    python bench/spread.py [--n 20] [--samples 4] [--threads 2]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

import napari_pulse
from harness import DATA, begin, parser, report
from heldout_x4 import crops
from napari_pulse.degrade import downscale
from napari_pulse.generators import load
from napari_pulse.generators.native import read_card
from napari_pulse.imageio import read_image
from napari_pulse.intensity import fit_intensity
from napari_pulse.metrics import psnr, spearman, ssim
from napari_pulse.result import SPREAD_SIGMA, gaussian_mean

SIGMAS = (0.25, 0.5, 0.75, 1.0)  # low-res pixels


def pooled(samples: np.ndarray, sigma: float) -> np.ndarray:
    """The samples' ``(N, H, W)`` per-pixel variance, Gaussian-averaged, square-rooted."""
    var = torch.from_numpy(samples.astype(np.float64).var(axis=0))[None, None]
    return np.sqrt(gaussian_mean(var, sigma).numpy()[0, 0])


def main() -> None:
    p = parser(__doc__, n=20)
    p.set_defaults(threads=2)
    p.add_argument("--samples", type=int, default=4)
    args = p.parse_args()
    begin(args)
    weights = Path(napari_pulse.__file__).parent / "data" / "generators" / "nuclei.safetensors"
    gen = load("nuclei")
    figures: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = crops(read_card(weights), DATA / "nuclei", args.n, Path(tmp))
        for path in files:
            raw = read_image(path)
            truth = np.clip(fit_intensity(raw, gen.card.normalization).to_unit(raw), 0, 1)
            low = np.rint(np.clip(downscale(truth, 4), 0, 1) * 255).astype(np.uint8)
            r = napari_pulse.upscale(
                low, generator="nuclei", factor=4, samples=args.samples, normalization="range"
            )
            samples = r.samples.astype(np.float64) / 255
            error = np.abs(samples.mean(0) - truth)
            rows = {"per-pixel std": samples.std(axis=0), "shipped (Result.std)": r.std / 255}
            rows |= {f"pooled, sigma {s} low-res px": pooled(samples, 4 * s) for s in SIGMAS}
            for name, spread in rows.items():
                figures.setdefault(name, []).append(spearman(spread, error))
            image = r.image.astype(np.float64) / 255
            expected = r.error / 255
            miss = np.abs(image - truth)
            maps = {
                "expected error vs the image's error": spearman(expected, miss),
                "expected error vs the mean's error": spearman(expected, error),
                "expected error RMS": float(np.sqrt((expected**2).mean())),
                "actual error RMS of the image": float(np.sqrt((miss**2).mean())),
            }
            for name, value in maps.items():
                figures.setdefault(name, []).append(value)
            figures.setdefault("mean psnr", []).append(psnr(samples.mean(0), truth))
            figures.setdefault("mean ssim", []).append(ssim(samples.mean(0), truth))
    print(f"{len(files)} held-out crops, x4, {args.samples} samples; shipped sigma {SPREAD_SIGMA}")
    for name, values in figures.items():
        v = np.array(values)
        report(name, median=f"{np.median(v):.3f}", low=f"{v.min():.3f}", high=f"{v.max():.3f}")


if __name__ == "__main__":
    main()
