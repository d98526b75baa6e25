"""Does the atypicality score tell a generator's own kind of image from other kinds?

For each generator, tiles of: fresh draws of the generator itself (typical by
construction), real images of its domain (held-out nuclei crops; real faces, which the
synthetic-face DCGAN never saw) and images of other kinds (scikit-image's cell image,
brightfield; its camera photograph). Each goes through ``upscale`` with a warm-start bank
and a one-step search (the score is computed before the search), as users would run it.
Prints, per set, the median tile score and the share of tiles at or above 0.95.

    python bench/atypicality.py [--bank 4096]
"""

from __future__ import annotations

import numpy as np
from PIL import Image

import napari_pulse
from harness import (
    DATA,
    begin,
    center_crop,
    generator_images,
    heldout_nuclei,
    other_kinds,
    parser,
    real_faces,
    report,
)
from napari_pulse.degrade import downscale
from napari_pulse.search import SearchConfig


def scores(images: list[np.ndarray], generator: str, factor: int, bank: int, **kw) -> np.ndarray:
    tiles = []
    for im in images:
        r = napari_pulse.upscale(
            im, generator=generator, factor=factor, steps=1, restarts=1,
            config=SearchConfig(bank=bank), **kw,
        )  # fmt: skip
        tiles.append(np.ravel(r.atypical_tiles))
    return np.concatenate(tiles)


def show(label: str, s: np.ndarray) -> None:
    high = {"share >= 0.95": f"{np.mean(s >= 0.95):.0%}"}
    report(f"  {label}", tiles=len(s), median=float(np.median(s)), **high)


def main() -> None:
    p = parser(__doc__, n=10)
    p.add_argument("--bank", type=int, default=4096)
    args = p.parse_args()
    begin(args)
    print(f"bank {args.bank}; {args.n} images per set")
    others = other_kinds()

    print("nuclei x4 (64x64 generator, 16x16 low-res tiles)")
    own = generator_images("nuclei", 4, args.n)
    show("own draws", scores(list(own), "nuclei", 4, args.bank, normalization="range"))
    if (DATA / "nuclei").is_dir():
        held = [np.asarray(Image.open(p).convert("L")) for p in heldout_nuclei()]
        low = [downscale(center_crop(h, 128).astype(np.float32), 4) for h in held[: args.n]]
        show("held-out nuclei (128 px crops)", scores(low, "nuclei", 4, args.bank))
    for label, a in others.items():
        low = downscale(center_crop(a, 256).astype(np.float32), 4)
        show(label + ", 256 px crop", scores([low], "nuclei", 4, args.bank))

    print("faces-dcgan64 x8 (8x8 low-res tiles)")
    own = generator_images("faces-dcgan64", 8, args.n)
    show(
        "own draws",
        scores(list(own), "faces-dcgan64", 8, args.bank, normalization="range", rgb=True),
    )
    if (DATA / "faces").is_dir():
        faces = list(real_faces(args.n)[1])
        show("real faces", scores(faces, "faces-dcgan64", 8, args.bank, rgb=True))
    for label, a in others.items():
        low = downscale(center_crop(a, 256).astype(np.float32), 8)
        show(label + " (gray), 256 px crop", scores([low], "faces-dcgan64", 8, args.bank))


if __name__ == "__main__":
    main()
