"""The search's passes in float32 and in bfloat16: pass speed, and a real field upscaled both ways.

First the nuclei generator's forward and backward (W+ latents and noise requiring grad, as
the search runs it) at each width of ``--batch`` (images per pass), in float32 and under
bfloat16 autocast (best of ``--repeats``), and the largest and RMS difference of one
forward. Then the field of ``field.py`` (``--size``: the low-res side; 0: no field)
upscaled x4 with every default but ``SearchConfig.precision``, for each of ``--seeds``,
bfloat16 first (any warm-up counts against it): wall time, tiles at eps, lr_psnr,
PSNR/SSIM against the truth.

    python bench/precision.py [--size 64] [--seeds 0 1 2] [--batch 32 64] [--threads 2]
"""

from __future__ import annotations

import time

import torch

from field import field, upscale_and_report
from generator_speed import step
from harness import begin, parser, report
from napari_pulse.generators import load
from napari_pulse.render import native_bfloat16
from napari_pulse.search import SearchConfig


def best(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def pass_speed(batch: int, repeats: int) -> None:
    gen = load("nuclei")
    g = torch.Generator().manual_seed(0)
    z = gen.sample_latents(batch, g).requires_grad_()
    noise = [torch.randn((batch, *s), generator=g).requires_grad_() for s in gen.noise_shapes()]

    def fast() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            step(gen, z, noise)

    fp = best(lambda: step(gen, z, noise), repeats)
    bf = best(fast, repeats)
    with torch.no_grad():
        a = gen.synthesize(z, noise)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            b = gen.synthesize(z, noise).float()
    report(
        f"nuclei forward+backward at {batch} images",
        float32_images_per_s=batch / fp,
        bfloat16_images_per_s=batch / bf,
        speed_up=f"{fp / bf:.2f}",
        max_abs_difference=(a - b).abs().max().item(),
        rms_difference=(a - b).pow(2).mean().sqrt().item(),
    )


def main() -> None:
    p = parser(__doc__)
    p.set_defaults(threads=2)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batch", type=int, nargs="+", default=[64])
    p.add_argument("--repeats", type=int, default=6)
    args = p.parse_args()
    begin(args)
    print("native bfloat16 on this CPU:", native_bfloat16("cpu"))
    for batch in args.batch:
        pass_speed(batch, args.repeats)
    if not args.size:
        return
    truth, low = field(args.size)
    for precision in ("bfloat16", "float32"):
        for seed in args.seeds:
            label = f"{args.size}x{args.size} field, {precision}, seed {seed}"
            upscale_and_report(
                label, low, truth, seed=seed, config=SearchConfig(precision=precision)
            )


if __name__ == "__main__":
    main()
