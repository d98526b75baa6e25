"""The seam refinement in groups of tiles: quality and time against the whole-batch form.

The field of ``field.py`` (``--size``: the low-res side) upscaled x4 with ``nuclei`` and
every default, except the seam refinement's grouping and steps, given as
``TILES:STEPS`` pairs (``--runs``; ``n`` for None: a whole batch of 64 images, or 3/16
of ``steps``). ``n:100`` is the setting before groups (a whole batch, 100 steps); the
default is ``16:n`` (16 tiles at a time, 75 steps). Prints wall time, tiles at eps,
lr_psnr and PSNR/SSIM against the truth, one process, in the order given.

    python bench/blend_groups.py [--size 128] [--runs n:100 16:n 16:100]
"""

from __future__ import annotations

from field import field, upscale_and_report
from harness import begin, parser
from napari_pulse.search import SearchConfig


def main() -> None:
    p = parser(__doc__)
    p.set_defaults(threads=2)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--runs", nargs="+", default=["n:100", "16:n", "16:100"])
    args = p.parse_args()
    begin(args)
    truth, low = field(args.size)
    for run in args.runs:
        tiles, steps = (None if v == "n" else int(v) for v in run.split(":"))
        cfg = SearchConfig(blend_tiles=tiles, blend_steps=steps)
        steps_run = cfg.blend_steps_for(2)  # for an image of several tiles
        label = f"{args.size}x{args.size} field, blend_tiles {tiles}, blend steps {steps_run}"
        upscale_and_report(label, low, truth, config=cfg)


if __name__ == "__main__":
    main()
