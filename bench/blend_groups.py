"""The seam refinement in groups of tiles: quality and time against the whole-batch form.

The field of ``field.py`` (``--size``: the low-res side) upscaled x4 with ``nuclei`` and
every default, except the seam refinement's grouping, steps, learning rate and batch
width, given as ``TILES:STEPS[:LR[:WIDTH]]`` (``--runs``; ``n`` for None: a whole batch
of 64 images, or 3/20 of ``steps``; LR and WIDTH default to the defaults). ``n:100:0.05``
is the setting before groups (a whole batch, 100 steps); ``16:75:0.05:16`` the one before
groups ran side by side (a width of 16 holds one group of 16 tiles); the default is
``16:n`` (16 tiles a group, groups side by side in batches of 64 images, 60 steps at 0.1).
Prints wall time, tiles at eps, lr_psnr and PSNR/SSIM against the truth, one process,
in the order given.

    python bench/blend_groups.py [--size 128] [--runs 16:75:0.05:16 16:n]
"""

from __future__ import annotations

from field import field, upscale_and_report
from harness import begin, parser
from napari_pulse.search import SearchConfig


def main() -> None:
    p = parser(__doc__)
    p.set_defaults(threads=2)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--runs", nargs="+", default=["16:75:0.05:16", "16:n"])
    args = p.parse_args()
    begin(args)
    truth, low = field(args.size)
    for run in args.runs:
        parts = run.split(":")
        tiles, steps = (None if v == "n" else int(v) for v in parts[:2])
        more = {"blend_lr": float(parts[2])} if len(parts) > 2 else {}
        if len(parts) > 3:
            more["batch_size"] = int(parts[3])
        cfg = SearchConfig(blend_tiles=tiles, blend_steps=steps, **more)
        steps_run = cfg.blend_steps_for(2)  # for an image of several tiles
        label = (
            f"{args.size}x{args.size} field, blend_tiles {tiles}, blend steps {steps_run}, "
            f"lr {cfg.blend_lr_for(2)}, width {cfg.batch_size or 'default'}"
        )
        upscale_and_report(label, low, truth, config=cfg)


if __name__ == "__main__":
    main()
