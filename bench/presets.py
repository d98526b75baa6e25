"""The widget's quality presets on the field of ``field.py``: time and quality of each.

The presets (``napari_pulse._widget.widget.PRESETS``) set ``steps`` and ``restarts``: with
an encoder they size the full search of the tiles the encoder rung leaves above eps, and
the seam refinement (3/20 of the steps for an image of several tiles). Each preset
upscales the field (``--sizes``: low-res sides, the centre of the same region) x4 with
``nuclei`` and one sample, one process, in the order given: wall time, tiles at eps,
generator passes per tile (median), lr_psnr and PSNR/SSIM against the truth, and the
image-border and seam figures of ``seams.border_steps`` (beside the truth's at the same lines).

    python bench/presets.py [--sizes 256 64] [--presets fast balanced best] [--bundled]

With ``--bundled``, the bundled sample (``data/nuclei_lr.png``, the README's main command's
input; no truth, so no PSNR/SSIM) instead of the field.
"""

from __future__ import annotations

import numpy as np

import napari_pulse
from field import field
from harness import begin, parser, report, timed
from napari_pulse.metrics import psnr, ssim
from seams import border_steps


def main() -> None:
    from napari_pulse._widget.widget import PRESETS

    p = parser(__doc__)
    p.set_defaults(threads=2)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 64])
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    p.add_argument("--bundled", action="store_true", help="the bundled sample instead")
    args = p.parse_args()
    begin(args)
    if args.bundled:
        bundled(args.presets)
        return
    for size in args.sizes:
        truth, low = field(size)
        for name in args.presets:
            steps, restarts = PRESETS[name]
            seconds, r = timed(
                napari_pulse.upscale, low, generator="nuclei", factor=4, steps=steps,
                restarts=restarts,
            )  # fmt: skip
            x = r.image.astype(np.float32) / 255
            report(
                f"{size}x{size} field, {name} ({steps} steps x {restarts} starts)",
                seconds=seconds,
                tiles_at_eps=f"{int(r.success_tiles.sum())}/{r.success_tiles.size}",
                passes_per_tile=(r.params.get("passes_per_tile") or {}).get("median"),
                lr_psnr_db=r.lr_psnr,
                psnr_db=f"{psnr(x, truth):.2f}",
                ssim=f"{ssim(x, truth):.3f}",
                **border_steps(r.image, r.params["tiles"], 4, truth * 255),
            )


def bundled(presets: list[str]) -> None:
    """Each preset on the bundled sample: time, fit, and the frame and seam figures."""
    from pathlib import Path

    from napari_pulse._widget.widget import PRESETS
    from napari_pulse.imageio import read_image

    low = read_image(Path(napari_pulse.__file__).parent / "data" / "nuclei_lr.png")
    for name in presets:
        steps, restarts = PRESETS[name]
        seconds, r = timed(
            napari_pulse.upscale, low, generator="nuclei", factor=4, steps=steps,
            restarts=restarts,
        )  # fmt: skip
        report(
            f"bundled sample {low.shape[0]}x{low.shape[1]}, {name}",
            seconds=seconds,
            tiles_at_eps=f"{int(r.success_tiles.sum())}/{r.success_tiles.size}",
            lr_psnr_db=r.lr_psnr,
            **border_steps(r.image, r.params["tiles"], 4),
        )


if __name__ == "__main__":
    main()
