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

from pathlib import Path

from PIL import Image

from harness import begin, describe, options, parser, report, timed
from napari_pulse.evaluate import evaluate, write_csv, write_figure
from napari_pulse.generators.native import read_card
from napari_pulse.imageio import read_image
from napari_pulse.intensity import fit_intensity
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
    p = parser(__doc__, n=20, search=True, samples=8)
    p.add_argument("weights", type=Path)
    p.add_argument("images", type=Path)
    p.add_argument("--per-image", type=int, default=1, help="most crops from one image")
    p.add_argument("--out", type=Path, help="default: out/<generator name>_x4")
    args = p.parse_args()
    card = read_card(args.weights)
    name = f"{card.get('name') or args.weights.stem}_x4"
    args.out = args.out or Path("out") / name
    files = crops(card, args.images, args.n, args.out / "crops", args.per_image)
    begin(args)
    opts = options(args, generator=str(args.weights), factor=4)
    print(f"generator: {args.weights} ({card['extra']['training']['steps']} training steps)")
    print(f"inputs: {len(files)} crops of held-out images, x4 bicubic, {describe(opts)}")
    seconds, ev = timed(evaluate, args.out / "crops", opts)
    write_csv(ev, args.out / f"{name}.csv")
    write_figure(ev, args.out / f"{name}.png")
    s = ev.summary
    report("success at eps", share=f"{s['success']:.0%}", median_lr_psnr_db=s["lr_psnr"])
    for what in ("bicubic", "sample", "mean"):
        report(what, median_psnr_db=f"{s[f'psnr_{what}']:.2f}", ssim=f"{s[f'ssim_{what}']:.3f}")
    report("median spread", value=f"{s['spread']:.4f}", seconds=seconds)
    print(f"csv and figure: {args.out}")


if __name__ == "__main__":
    main()
