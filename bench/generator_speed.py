"""Speed of a bundled-size StyleGAN2 in the search's inner step, against a plain matmul.

One step is what the latent search does per optimiser step: synthesize from W+ latents and
per-layer noise (both requiring grad, weights frozen), then backward. Prints, one figure per
line: time per sample, FLOPs per sample (matmuls and convolutions, forward and backward, as
counted by ``torch.utils.flop_counter.FlopCounterMode``), the GFLOP/s that reaches, and the
GFLOP/s of a plain square matmul measured in the same run.

    python bench/generator_speed.py [--batch 64] [--threads 1] [--repeats 5]
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from harness import begin, best_time, parser, report
from napari_pulse.generators import ModelCard
from napari_pulse.generators.stylegan2 import StyleGAN2, StyleGAN2Config, StyleGAN2Generator

CONFIG = StyleGAN2Config(
    resolution=64,
    channels=1,
    style_dim=128,
    n_mlp=4,
    widths={4: 128, 8: 128, 16: 64, 32: 32, 64: 16},
)


def step(gen: StyleGAN2Generator, z: torch.Tensor, noise: list[torch.Tensor]) -> None:
    z.grad = None
    for n in noise:
        n.grad = None
    img = gen.synthesize(z, noise)
    img.square().mean().backward()


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--matmul", type=int, default=1024, help="side of the square matmul")
    args = p.parse_args()
    begin(args)
    torch.manual_seed(0)

    net = StyleGAN2(CONFIG).eval().requires_grad_(False)
    d = CONFIG.style_dim
    gen = StyleGAN2Generator(net, ModelCard("bench"), gaussian=(torch.zeros(d), torch.ones(d)))
    g = torch.Generator().manual_seed(0)
    z = gen.sample_latents(args.batch, g).requires_grad_()
    noise = [
        torch.randn((args.batch, *s), generator=g).requires_grad_() for s in gen.noise_shapes()
    ]

    with FlopCounterMode(display=False) as counter:
        step(gen, z, noise)
    flops = counter.get_total_flops() / args.batch
    t = best_time(lambda: step(gen, z, noise), args.repeats) / args.batch

    n = args.matmul
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    t_mm = best_time(lambda: a @ b, args.repeats)
    mm_gflops = 2 * n**3 / t_mm / 1e9

    print(
        f"generator: StyleGAN2 {CONFIG.resolution}x{CONFIG.resolution}x{CONFIG.channels}, "
        f"style_dim {d}, n_mlp {CONFIG.n_mlp}, widths {CONFIG.widths}, W+ and noise searched"
    )
    report("batch", images=args.batch)
    report("forward+backward time per sample", ms=f"{t * 1e3:.3f}")
    report("FLOPs per sample (forward+backward)", mflop=f"{flops / 1e6:.1f}")
    report("generator throughput", gflop_per_s=f"{flops / t / 1e9:.2f}")
    report(f"matmul throughput ({n}x{n} @ {n}x{n}, float32)", gflop_per_s=f"{mm_gflops:.2f}")
    report("generator / matmul", share=f"{flops / t / 1e9 / mm_gflops:.1%}")


if __name__ == "__main__":
    main()
