"""The StyleGAN2 layers' fused elementwise arithmetic against the plain formulation.

The shipped layers compute a styled convolution's tail ``lrelu(demod * conv + noise +
bias) * sqrt 2`` in three elementwise passes (the factor sqrt 2 folded into the others,
``torch.addcmul`` for the rest) and a 1x1 to-RGB convolution as one batched matrix product
with the modulation folded into a weight per image. This script swaps in the plain
formulation (one operation per term, as in rosinality's code and this project before),
and times both in one process, alternating, on the search's pass (the ``Renderer`` with
its precision, latents and noise requiring grad, then backward) at ``--batch``. Prints
each one's median images per second over ``--rounds`` (each the best of three passes),
their ratio, and how far their images and latent gradients differ.

    python bench/fused_layers.py [--generator nuclei] [--batch 64] [--threads 2]
"""

from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F

from harness import begin, parser, report, timed
from napari_pulse.generators import load
from napari_pulse.generators import stylegan2 as sg
from napari_pulse.render import Renderer, pass_dtype


def plain_conv(conv: sg.ModulatedConv2d, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    s = conv.modulation(style)
    weight = conv.scale * conv.weight[0]
    x = x * s[:, :, None, None].to(x.dtype)
    if conv.upsample:
        out = conv.blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))
    else:
        out = F.conv2d(x, weight, padding=conv.padding)
    if conv.demodulate:
        demod = torch.rsqrt(s.pow(2) @ weight.pow(2).sum(dim=(2, 3)).t() + 1e-8)
        out = out * demod[:, :, None, None].to(out.dtype)
    return out


def plain_styled(self: sg.StyledConv, x, style, noise=None):
    out = plain_conv(self.conv, x, style)
    if noise is None:
        noise = out.new_empty(out.shape[0], 1, *out.shape[2:]).normal_()
    out = out + (self.noise.weight * noise).to(out.dtype)
    return sg._clamp(self.activate(out), self.clamp)


def plain_rgb(self: sg.ToRGB, x, style, skip=None):
    out = sg._clamp(plain_conv(self.conv, x, style) + self.bias, self.clamp)
    return out if skip is None else out + self.upsample(skip)


FUSED = (sg.StyledConv.forward, sg.ToRGB.forward)
PLAIN = (plain_styled, plain_rgb)


def use(layers) -> None:
    sg.StyledConv.forward, sg.ToRGB.forward = layers


def main() -> None:
    p = parser(__doc__, generator="nuclei")
    p.set_defaults(threads=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    begin(args)
    gen = load(args.generator)
    if not isinstance(getattr(gen, "net", None), sg.StyleGAN2):
        raise SystemExit(f"{args.generator} is not a StyleGAN2")
    dtype = pass_dtype("auto", "cpu")
    render = Renderer(gen, gen.channels, gen.resolution, dtype)
    rng = torch.Generator().manual_seed(0)
    z0 = gen.sample_latents(args.batch, rng)
    noise0 = [torch.randn((args.batch, *s), generator=rng) for s in gen.noise_shapes()]

    def one() -> tuple[torch.Tensor, torch.Tensor]:
        z = z0.clone().requires_grad_()
        noise = [x.clone().requires_grad_() for x in noise0]
        img = render(z, noise)
        img.square().mean().backward()
        return img.detach(), z.grad

    rates: dict[str, list[float]] = {"plain": [], "fused": []}
    outputs = {}
    try:
        for r in range(args.rounds):
            for name in ("plain", "fused") if r % 2 == 0 else ("fused", "plain"):
                use(PLAIN if name == "plain" else FUSED)
                outputs[name] = one()
                best = min(timed(one)[0] for _ in range(3))
                rates[name].append(args.batch / best)
    finally:
        use(FUSED)
    print(f"generator: {args.generator}, passes in {dtype or torch.float32}, batch {args.batch}")
    for name, r in rates.items():
        report(name, images_per_s=statistics.median(r))
    fused, plain = (statistics.median(rates[k]) for k in ("fused", "plain"))
    report("fused / plain", ratio=fused / plain)
    (a, ga), (b, gb) = outputs["fused"], outputs["plain"]
    report(
        "difference",
        image_max=f"{(a - b).abs().max():.1e}",
        gradient_relative=f"{(ga - gb).norm() / gb.norm():.1e}",
    )


if __name__ == "__main__":
    main()
