"""A real microscopy field with the defaults: time, work per tile and quality at x4.

The input: the central 1024x1024 region of ``c901794d1a421d52.png`` from
``../shared/data/nuclei`` (the only image of the folder with both sides >= 1024: 1388x1040,
a field of large nuclei on a dark background; it is in the generator's training split,
because no held-out image is that large), percentile-normalised (1st..99.8th) and
clipped: the truth. It is downscaled x4 (bicubic) to a 256x256 uint8 field (``--size``
sets the low-res side; a smaller field is the centre of the same region), and upscaled
with every setting at its default, with ``samples=1`` and ``samples=4`` (``--samples``):
a first call in an empty cache directory (anything built on first use counted), then a
second call. Prints, per call: wall time, tiles, generator passes per tile (median and
max), tiles at eps, success, lr_psnr, and PSNR/SSIM against the truth (the best sample
and the mean of the samples) beside bicubic upsampling; and, timed in the same process,
one reference PULSE start (``reference_pulse.py``: 100 steps at batch 1, median of three
tiles of the field) and each call's seconds per tile as a share of it.

Only the public ``upscale`` is called, so the script runs against older versions too::

    python bench/field.py [--size 256] [--samples 1 4] [--threads 2]
    PYTHONPATH=<old checkout>/src python bench/field.py --size 64 --samples 1
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from PIL import Image

import napari_pulse
from harness import DATA, begin, center_crop, parser, report, timed
from napari_pulse import evaluate
from napari_pulse.degrade import downscale
from napari_pulse.metrics import psnr, spearman, ssim

#: Plain bicubic upsampling, the baseline (its name before it was public, for old versions).
bicubic_up = getattr(evaluate, "bicubic_up", None) or evaluate._bicubic_up

IMAGE = "c901794d1a421d52.png"


def field(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The truth ``(4 size, 4 size)`` in [0, 1] and its x4 uint8 low-res field."""
    a = np.asarray(Image.open(DATA / "nuclei" / IMAGE).convert("L"), dtype=np.float64)
    region = center_crop(a, 1024)
    lo, hi = np.percentile(region, (1, 99.8))
    truth = center_crop(np.clip((region - lo) / (hi - lo), 0, 1), 4 * size).astype(np.float32)
    low = np.clip(np.rint(downscale(truth, 4) * 255), 0, 255).astype(np.uint8)
    return truth, low


def upscale_and_report(label: str, low: np.ndarray, truth: np.ndarray, **settings) -> None:
    """Upscale the field x4 with ``nuclei`` and ``settings``; print wall time, tiles at
    eps, lr_psnr and PSNR/SSIM against the truth (for the scripts that vary a setting)."""
    seconds, r = timed(napari_pulse.upscale, low, generator="nuclei", factor=4, **settings)
    x = r.image.astype(np.float32) / 255
    report(
        label,
        seconds=seconds,
        tiles_at_eps=f"{int(r.success_tiles.sum())}/{r.success_tiles.size}",
        lr_psnr_db=r.lr_psnr,
        psnr_db=f"{psnr(x, truth):.2f}",
        ssim=f"{ssim(x, truth):.3f}",
    )


def reference_start(low: np.ndarray) -> float | None:
    """Seconds of one reference PULSE start on a tile of the field (median of three);
    None where this version has no reference loop to run."""
    try:
        from reference_pulse import reference_pulse
    except ImportError:
        return None
    import torch

    from napari_pulse.generators import load

    g = load("nuclei")
    h = low.shape[0] // 2
    tiles = [low[y : y + 16, x : x + 16] for y, x in ((0, 0), (h, h), (h - 8, 0))]
    runs = []
    for i, t in enumerate(tiles):
        target = torch.from_numpy(t.astype(np.float32) / 255)[None]
        runs.append(timed(reference_pulse, g, target, 4, steps=100, seed=i)[0])
    return float(np.median(runs))


def measure(label: str, low, truth, samples: int, reference: float | None) -> None:
    seconds, r = timed(napari_pulse.upscale, low, generator="nuclei", factor=4, samples=samples)
    passes = r.params.get("passes_per_tile") or {}
    at_eps = int(np.sum(r.success_tiles))
    best = r.image.astype(np.float32) / 255
    mean = r.mean / 255
    per_tile = seconds / np.size(r.lr_psnr_tiles)
    share = {} if reference is None else {"of_a_reference_start": f"{per_tile / reference:.3f}"}
    if r.error is not None:  # the expected-error map against the image's actual error
        miss, expected = np.abs(best - truth), r.error / 255
        share["expected_error"] = (
            f"rank correlation {spearman(expected, miss):.3f}, RMS "
            f"{np.sqrt((expected**2).mean()):.4f} expected, {np.sqrt((miss**2).mean()):.4f} actual"
        )
    report(
        label,
        seconds=seconds,
        tiles=int(np.size(r.lr_psnr_tiles)),
        seconds_per_tile=per_tile,
        **share,
        passes_per_tile=f"median {passes.get('median', 'n/a')}, max {passes.get('max', 'n/a')}",
        tiles_at_eps=f"{at_eps}/{np.size(r.success_tiles)}",
        success=bool(r.success),
        lr_psnr_db=r.lr_psnr,
        psnr_db=f"{psnr(best, truth):.2f} (mean {psnr(mean, truth):.2f})",
        ssim=f"{ssim(best, truth):.3f} (mean {ssim(mean, truth):.3f})",
    )


def main() -> None:
    p = parser(__doc__)
    p.set_defaults(threads=2)
    p.add_argument("--size", type=int, default=256, help="low-res side of the field")
    p.add_argument("--samples", type=int, nargs="+", default=[1, 4])
    args = p.parse_args()
    begin(args)
    print("napari_pulse:", napari_pulse.__file__)
    truth, low = field(args.size)
    print(f"input: {IMAGE}, {args.size}x{args.size} uint8 field (x4 of {4 * args.size} px)")
    bicubic = bicubic_up(low.astype(np.float32) / 255, truth.shape)
    report("bicubic", psnr_db=f"{psnr(bicubic, truth):.2f}", ssim=f"{ssim(bicubic, truth):.3f}")
    reference = reference_start(low)
    if reference is not None:
        report("one reference PULSE start (100 steps, batch 1; median of 3 tiles)", s=reference)
    for samples in args.samples:
        os.environ["NAPARI_PULSE_CACHE"] = tempfile.mkdtemp(prefix="napari-pulse-field-")
        for call in ("first call, empty cache", "second call"):
            measure(f"defaults, samples={samples}, {call}", low, truth, samples, reference)


if __name__ == "__main__":
    main()
