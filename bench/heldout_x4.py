"""Usefulness of a generator made by ``napari-pulse train``: 20 unseen images at x4 (bicubic).

From each held-out image (``held_out(name, holdout)`` as recorded in the model card: files
training never read), in name order, crops of the generator's size are taken: the first
(``--per-image`` > 1: the first few that do not overlap), scanning a grid with half-crop
strides, that satisfy the card's foreground rule (nuclei or stained cells, not empty
background). Grayscale or RGB, as the card says. The crops are written as PNGs and passed
to ``napari_pulse.evaluate``, which downscales them x4, upscales them back and compares
with the truth: success at eps, lr_psnr, PSNR and SSIM for bicubic, one sample and the
mean of the samples. Nothing is tuned on these images.

    python bench/heldout_x4.py train-runs/nuclei.safetensors ../shared/data/nuclei --out out/nx4
    python bench/heldout_x4.py train-runs/histology.safetensors ../shared/data/histology \
        --per-image 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from PIL import Image

from _common import machine
from napari_pulse.evaluate import evaluate, write_csv, write_figure
from napari_pulse.generators.native import read_card
from napari_pulse.imageio import read_image
from napari_pulse.intensity import fit_intensity
from napari_pulse.search import SearchConfig
from napari_pulse.training.data import CropRule, list_images, to_channels


def crops(card: dict, images: Path, n: int, folder: Path, per_image: int = 1) -> list[Path]:
    """Up to ``per_image`` non-overlapping crops per held-out image, the first ``n`` in all."""
    made = card["extra"]["training"]
    size = made["settings"]["resolution"]
    rule = CropRule.from_card(made["data"]["crop_rule"])
    channels = made["settings"]["channels"]
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for path in list_images(images, made["settings"]["holdout"], "holdout"):
        a = read_image(path)
        if (a.ndim == 2) != (channels == 1) or min(a.shape[:2]) < size:
            continue
        unit = to_channels(
            fit_intensity(a, made["settings"]["normalization"]).to_unit(a), channels, path
        )
        step = size // 2
        taken: list[tuple[int, int]] = []
        for y in range(0, a.shape[0] - size + 1, step):
            for x in range(0, a.shape[1] - size + 1, step):
                apart = all(abs(y - ty) >= size or abs(x - tx) >= size for ty, tx in taken)
                if (
                    len(taken) < per_image
                    and apart
                    and rule.keeps(unit[:, y : y + size, x : x + size])
                ):
                    taken.append((y, x))
        for y, x in taken:
            out = folder / f"{path.stem}_y{y}_x{x}.png"
            Image.fromarray(a[y : y + size, x : x + size]).save(out)
            written.append(out)
            if len(written) == n:
                return written
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", type=Path)
    p.add_argument("images", type=Path)
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--per-image", type=int, default=1, help="most crops from one image")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--restarts", type=int, default=96)
    p.add_argument("--mode", default="latent", choices=["latent", "intermediate"])
    p.add_argument("--bank", type=int, default=0, help="warm-start bank size")
    p.add_argument("--guide", action="store_true", help="guided starts (fitted on the bank)")
    p.add_argument("--out", type=Path, help="default: out/<generator name>_x4")
    args = p.parse_args()
    card = read_card(args.weights)
    name = f"{card.get('name') or args.weights.stem}_x4"
    args.out = args.out or Path("out") / name
    files = crops(card, args.images, args.n, args.out / "crops", args.per_image)
    print(f"machine: {machine()}")
    print(f"generator: {args.weights} ({card['extra']['training']['steps']} training steps)")
    starts = f"bank {args.bank}{', guided' if args.guide else ''}" if args.bank else "blind"
    print(
        f"inputs: {len(files)} crops of held-out images, x4 bicubic, {args.mode} search, "
        f"{starts} starts"
    )
    t = time.perf_counter()
    ev = evaluate(
        args.out / "crops",
        generator=str(args.weights),
        factor=4,
        samples=args.samples,
        steps=args.steps,
        restarts=args.restarts,
        mode=args.mode,
        config=SearchConfig(bank=args.bank, guide=args.guide) if args.bank else None,
    )
    write_csv(ev, args.out / f"{name}.csv")
    write_figure(ev, args.out / f"{name}.png")
    s = ev.summary
    print(f"success at eps: {s['success']:.0%}; median lr_psnr {s['lr_psnr']:.1f} dB")
    for what in ("bicubic", "sample", "mean"):
        print(f"{what}: median PSNR {s[f'psnr_{what}']:.2f} dB, SSIM {s[f'ssim_{what}']:.3f}")
    print(f"median spread: {s['spread']:.4f}; seconds: {time.perf_counter() - t:.0f}")
    print(f"csv and figure: {args.out}")


if __name__ == "__main__":
    main()
