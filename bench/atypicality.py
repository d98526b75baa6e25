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

import argparse

import numpy as np
from PIL import Image

import napari_pulse
from _common import DATA, machine
from napari_pulse.degrade import downscale
from napari_pulse.search import SearchConfig
from napari_pulse.training.data import list_images
from self_consistency import inputs


def crop(a: np.ndarray, size: int) -> np.ndarray:
    y, x = (a.shape[0] - size) // 2, (a.shape[1] - size) // 2
    return a[y : y + size, x : x + size]


def scores(images: list[np.ndarray], generator: str, factor: int, bank: int, **kw) -> np.ndarray:
    tiles = []
    for im in images:
        r = napari_pulse.upscale(
            im, generator=generator, factor=factor, steps=1, restarts=1,
            config=SearchConfig(bank=bank), **kw,
        )  # fmt: skip
        tiles.append(np.ravel(r.atypical_tiles))
    return np.concatenate(tiles)


def report(label: str, s: np.ndarray) -> None:
    print(
        f"  {label}: {len(s)} tiles, median {np.median(s):.2f}, >= 0.95: {np.mean(s >= 0.95):.0%}"
    )


def main() -> None:
    from skimage.data import camera, cell

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bank", type=int, default=4096)
    ap.add_argument("--n", type=int, default=10, help="images per set")
    args = ap.parse_args()
    print(f"machine: {machine()}; bank {args.bank}")
    others = {"skimage cell (brightfield)": cell(), "skimage camera (photograph)": camera()}

    print("nuclei x4 (64x64 generator, 16x16 low-res tiles)")
    own = inputs("nuclei", 4, args.n)
    report("own draws", scores(list(own), "nuclei", 4, args.bank, normalization="range"))
    if (DATA / "nuclei").is_dir():
        held = [
            np.asarray(Image.open(p).convert("L"))
            for p in list_images(DATA / "nuclei", 0.1, "holdout")
        ]
        low = [downscale(crop(h, 128).astype(np.float32), 4) for h in held[: args.n]]
        report("held-out nuclei (128 px crops)", scores(low, "nuclei", 4, args.bank))
    for label, a in others.items():
        low = downscale(crop(a, 256).astype(np.float32), 4)
        report(label + ", 256 px crop", scores([low], "nuclei", 4, args.bank))

    print("faces-dcgan64 x8 (8x8 low-res tiles)")
    own = inputs("faces-dcgan64", 8, args.n)
    report(
        "own draws",
        scores(list(own), "faces-dcgan64", 8, args.bank, normalization="range", rgb=True),
    )
    if (DATA / "faces").is_dir():
        from real_faces import faces

        report(
            "real faces", scores(list(faces(args.n)[1]), "faces-dcgan64", 8, args.bank, rgb=True)
        )
    for label, a in others.items():
        low = downscale(crop(a, 256).astype(np.float32), 8)
        report(label + " (gray), 256 px crop", scores([low], "faces-dcgan64", 8, args.bank))


if __name__ == "__main__":
    main()
