"""Speed of the default search mode, to compare two versions of napari-pulse on one machine.

A fixed workload with every search setting at its default: 4 face-DCGAN images (generator
images, seed 1234) at x8, and one 48x48 tiny-generator mosaic at x4 (overlapping tiles, so
the seam refinement runs). Prints the wall time of each and the low-res PSNR, so that
a change that only adds options can show it neither slows nor changes the default:

    PYTHONPATH=<old checkout>/src python bench/default_speed.py
    python bench/default_speed.py

Run the two one after another on an otherwise idle machine (or both under the same load).
Only the public ``upscale`` is called, so the script runs against older versions too.
"""

from __future__ import annotations

import numpy as np

import napari_pulse
from harness import begin, generator_images, parser, report, timed


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    begin(args)
    print("napari_pulse:", napari_pulse.__file__)
    faces = generator_images("faces-dcgan64", 8, 4)
    tiny = np.random.default_rng(0).random((48, 48)).astype(np.float32)
    tiny[12:36, 12:36] += 0.5
    napari_pulse.upscale(
        faces[:1], generator="faces-dcgan64", factor=8, steps=2, restarts=2, rgb=True
    )
    for _ in range(args.repeats):
        dt, r = timed(
            napari_pulse.upscale,
            faces,
            generator="faces-dcgan64",
            factor=8,
            normalization="range",
            rgb=True,
        )
        report("faces-dcgan64 x8, 4 inputs, defaults", seconds=dt, lr_psnr=r.lr_psnr)
        dt, r = timed(napari_pulse.upscale, tiny, generator="tiny", factor=4)
        n = int(np.size(r.lr_psnr_tiles))
        report(f"tiny x4, 48x48 ({n} tiles), defaults", seconds=dt, lr_psnr=r.lr_psnr)


if __name__ == "__main__":
    main()
