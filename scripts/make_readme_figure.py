"""Make ``docs/face_x8.png`` for the README with the tool itself (run from the repo root).

The bundled 8x8 face (``scripts/make_samples.py``) upscaled x8 with ``faces-dcgan64``,
4 samples, seed 0, default settings. Panels: input (enlarged), bicubic, our best sample,
the mean of the samples, their per-pixel spread, and the synthetic face the input came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import napari_pulse
from napari_pulse._sample_data import face_lowres

ROOT = Path(__file__).resolve().parents[1]
SCALE = 2  # each 64x64 panel is shown at 128x128


def panel(rgb: np.ndarray, label: str) -> Image.Image:
    img = Image.fromarray(rgb).resize((64 * SCALE, 64 * SCALE), Image.NEAREST)
    out = Image.new("RGB", (img.width, img.height + 16), "white")
    out.paste(img, (0, 16))
    ImageDraw.Draw(out).text((2, 2), label, fill="black")
    return out


def main() -> None:
    low = face_lowres()
    r = napari_pulse.upscale(low, generator="faces-dcgan64", factor=8, samples=4, seed=0)
    print(f"lr_psnr {r.lr_psnr:.1f} dB, success {r.success}, samples {r.sample_lr_psnr}")
    t = torch.from_numpy(low.astype(np.float32) / 255).permute(2, 0, 1)[None]
    bicubic = torch.nn.functional.interpolate(t, scale_factor=8, mode="bicubic")
    bicubic = (bicubic[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    spread = r.std.mean(axis=-1)
    spread = (np.clip(spread / max(spread.max(), 1e-6), 0, 1) * 255).astype(np.uint8)
    panels = [
        panel(np.kron(low, np.ones((8, 8, 1), np.uint8)), "input 8x8"),
        panel(bicubic, "bicubic"),
        panel(r.image, f"ours {r.lr_psnr:.0f} dB"),
        panel(np.clip(r.mean, 0, 255).round().astype(np.uint8), "mean of 4"),
        panel(np.repeat(spread[..., None], 3, axis=-1), "spread"),
        panel(np.asarray(Image.open(ROOT / "docs/face_truth.png").convert("RGB")), "source"),
    ]
    sheet = Image.new(
        "RGB", (sum(p.width for p in panels) + 4 * len(panels), panels[0].height), "white"
    )
    x = 0
    for p in panels:
        sheet.paste(p, (x, 0))
        x += p.width + 4
    sheet.save(ROOT / "docs/face_x8.png")
    print("wrote docs/face_x8.png")


if __name__ == "__main__":
    main()
