"""A stack of real microscopy planes with the defaults: time and quality at x4.

The planes: ``--planes`` 64x64 uint8 fields cut side by side (row by row) from the 256x256
field of ``field.py`` (the central 1024x1024 region of ``c901794d1a421d52.png``,
percentile-normalised, bicubic x4), stacked as a (P, 64, 64) array and upscaled in one
``upscale`` call with every setting at its default (``--samples``). Prints wall time,
planes per minute, how many blocks ran, tiles at eps, lr_psnr, and PSNR/SSIM against the
truth (mean over planes) beside bicubic upsampling. With ``--workers N``, the same stack
then goes through :func:`napari_pulse.batch.iter_stack` on a local Dask cluster of N
worker processes (the cores shared out among them; its start and close timed too), as the
viewer's "all planes" runs when a scheduler is set, and the two results are compared.

Only the public ``upscale`` is called, so the script runs against older versions too::

    python bench/stack.py [--planes 6] [--samples 1] [--threads 2] [--workers 2]
    PYTHONPATH=<old checkout>/src python bench/stack.py
"""

from __future__ import annotations

import numpy as np

import napari_pulse
from field import bicubic_up, field
from harness import begin, parser, report, timed
from napari_pulse.metrics import psnr, ssim


def planes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` truths (256x256) and their 64x64 low-res fields, side by side in the field."""
    truth, low = field(256)
    spots = [(y, x) for y in range(0, 256, 64) for x in range(0, 256, 64)][:n]
    hr = np.stack([truth[4 * y : 4 * y + 256, 4 * x : 4 * x + 256] for y, x in spots])
    return hr, np.stack([low[y : y + 64, x : x + 64] for y, x in spots])


def main() -> None:
    p = parser(__doc__)
    p.set_defaults(threads=2)
    p.add_argument("--planes", type=int, default=6)
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--workers", type=int, nargs="*", default=[], help="also on Dask")
    args = p.parse_args()
    begin(args)
    print("napari_pulse:", napari_pulse.__file__)
    truth, low = planes(args.planes)
    print(f"input: {len(low)} planes of 64x64 uint8 (x4 of 256 px)")
    pairs = zip(low, truth, strict=True)
    bic = [bicubic_up(lo.astype(np.float32) / 255, t.shape) for lo, t in pairs]
    report(
        "bicubic",
        psnr_db=f"{np.mean([psnr(b, t) for b, t in zip(bic, truth, strict=True)]):.2f}",
        ssim=f"{np.mean([ssim(b, t) for b, t in zip(bic, truth, strict=True)]):.3f}",
    )
    seconds, r = timed(
        napari_pulse.upscale, low, generator="nuclei", factor=4, samples=args.samples
    )
    plain_seconds.append(seconds)
    best = r.image.astype(np.float32) / 255
    report(
        f"defaults, samples={args.samples}",
        seconds=seconds,
        planes_per_minute=60 * len(low) / seconds,
        blocks=r.params.get("blocks", 1),
        tiles_at_eps=f"{int(np.sum(r.success_tiles))}/{np.size(r.success_tiles)}",
        lr_psnr_db=r.lr_psnr,
        psnr_db=f"{np.mean([psnr(b, t) for b, t in zip(best, truth, strict=True)]):.2f}",
        ssim=f"{np.mean([ssim(b, t) for b, t in zip(best, truth, strict=True)]):.3f}",
    )
    for n in args.workers:
        on_dask(low, args.samples, n, r)


def on_dask(low: np.ndarray, samples: int, workers: int, plain) -> None:
    """The stack through ``iter_stack`` on a local cluster of ``workers`` processes (its
    start and close counted)."""
    from napari_pulse.batch import iter_stack
    from napari_pulse.batch.cluster import local_size
    from napari_pulse.events import Finished

    def run():
        stream = iter_stack(low, workers=workers, generator="nuclei", factor=4, samples=samples)
        return next(e for e in stream if isinstance(e, Finished)).result

    seconds, r = timed(run)
    n, threads = local_size(workers)
    report(
        f"iter_stack on a local cluster of {n} worker(s) x {threads} thread(s)",
        seconds=seconds,
        planes_per_minute=60 * len(low) / seconds,
        of_the_plain_time=f"{seconds / plain_seconds[0]:.3f}",
        equal_to_upscale=bool(np.array_equal(r.image, plain.image)),
        max_difference=int(np.abs(r.image.astype(int) - plain.image.astype(int)).max()),
    )


plain_seconds: list[float] = []


if __name__ == "__main__":
    main()
