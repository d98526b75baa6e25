"""Does a generator's own edge look like its inside? The step profile from the border in.

Draws ``--n`` images from each generator's prior (seed 0), takes them as luminance in
uint8 units, and prints the mean |step| between high-res line ``k`` and ``k + 1`` counted
from the top/left edge and from the bottom/right edge (rows and columns averaged), against
the median step between lines further in. A generator whose outer lines step more than its
inside leaves a frame wherever its edge is the image's edge; ``tiling.GENERATOR_EDGE``
(the high-res lines that the border of ``tiling.border`` puts outside the image) is chosen
from this profile.

    python bench/generator_edge.py [--generators nuclei faces-dcgan64] [--n 256]
"""

from __future__ import annotations

import numpy as np
import torch

from harness import begin, parser, report
from napari_pulse.generators import load


def profile(name: str, n: int, depth: int = 8) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean steps from the top/left edge in, from the bottom/right edge in, and inside."""
    g = load(name)
    with torch.no_grad():
        z = g.sample_latents(n, torch.Generator().manual_seed(0))
        x = ((g.synthesize(z, None) + 1) / 2).mean(1).numpy() * 255
    rows = np.abs(np.diff(x, axis=1)).mean(axis=(0, 2))
    steps = (rows + np.abs(np.diff(x, axis=2)).mean(axis=(0, 1))) / 2
    return steps[:depth], steps[-depth:][::-1], float(np.median(steps[depth:-depth]))


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--generators", nargs="+", default=["nuclei", "faces-dcgan64"])
    p.add_argument("--n", type=int, default=256)
    args = p.parse_args()
    begin(args)
    for name in args.generators:
        first, last, inside = profile(name, args.n)
        report(
            name,
            from_top_left=" ".join(f"{v:.2f}" for v in first),
            from_bottom_right=" ".join(f"{v:.2f}" for v in last),
            inside_median=f"{inside:.2f}",
            outer_line_over_inside=f"{(first[0] + last[0]) / 2 / inside:.2f}x",
        )


if __name__ == "__main__":
    main()
