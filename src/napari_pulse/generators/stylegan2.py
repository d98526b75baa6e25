"""StyleGAN2 in pure PyTorch: no custom CUDA ops, any resolution 2^k >= 16, 1 or 3 channels.

The module tree and parameter names follow rosinality/stylegan2-pytorch (MIT), so that its
``g_ema`` state dicts load with few renames. Modulation is applied to the activations rather
than to a per-sample weight (the same arithmetic as the grouped convolution, one plain
convolution instead of one group per sample), which is faster on a CPU; the 1x1 to-RGB
convolutions fold it into a weight per image (one batched matrix product).

:class:`StyleGAN2` is the network; :class:`StyleGAN2Generator` wraps it for the search with
one of the latent layouts ``w+`` (one vector per layer), ``w`` (one vector for all layers)
and the Gaussianised parameterisation of PULSE: a search-space vector ``v`` maps to
``w = lrelu(v * std + mean)``, where mean and std describe the mapping network's output with
its last activation undone.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .base import DomainGenerator, ModelCard

SQRT2 = math.sqrt(2.0)


def channel_widths(resolution: int, base: int = 16384, maximum: int = 512) -> dict[int, int]:
    """Feature widths per resolution, as in StyleGAN2: ``min(base / r, maximum)``."""
    log = int(math.log2(resolution))
    return {2**i: int(min(base // 2**i, maximum)) for i in range(2, log + 1)}


#: Largest sizes a StyleGAN2 may declare (FFHQ's 1024x1024 network fits; a card asking
#: for more is refused before anything is allocated).
MAX_RESOLUTION = 1024
MAX_WIDTH = 1024


def _bounded_int(name: str, value: object, top: int) -> None:
    integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not integral or not 1 <= value <= top:
        raise ValueError(f"{name} must be an integer from 1 to {top}, got {value!r}")


@dataclass
class StyleGAN2Config:
    """Everything that fixes a StyleGAN2's shapes (stored in the model card)."""

    resolution: int = 64
    channels: int = 1
    style_dim: int = 128
    n_mlp: int = 4
    #: Widths per resolution, keys as strings in JSON; see :func:`channel_widths`.
    widths: dict[int, int] = field(default_factory=dict)
    lr_mlp: float = 0.01
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)
    #: Clamp conv and to-RGB outputs to +-this (NVlabs' ``conv_clamp``); None: no clamping.
    conv_clamp: float | None = None

    def __post_init__(self) -> None:
        self._check_sizes()
        log = math.log2(self.resolution)
        if self.resolution < 16 or log != int(log):
            raise ValueError(f"StyleGAN2 resolution must be 2^k >= 16, got {self.resolution}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if not self.widths:
            self.widths = channel_widths(self.resolution)
        self.widths = {int(k): int(v) for k, v in self.widths.items()}
        self.blur_kernel = tuple(int(k) for k in self.blur_kernel)
        missing = [2**i for i in range(2, int(log) + 1) if 2**i not in self.widths]
        if missing:
            raise ValueError(f"widths lack resolutions {missing}")

    def _check_sizes(self) -> None:
        """Types and sane bounds, before anything is built from them (a card is untrusted)."""
        for name, top in (("resolution", MAX_RESOLUTION), ("style_dim", MAX_WIDTH), ("n_mlp", 16)):
            _bounded_int(name, getattr(self, name), top)
        if not isinstance(self.widths, dict) or len(self.widths) > 16:
            raise ValueError(
                f"widths must be a mapping of resolution to width, got {self.widths!r}"
            )
        for k, v in self.widths.items():
            _bounded_int(f"widths[{k!r}]", v, MAX_WIDTH)
            _bounded_int("a widths key", int(k) if str(k).isdigit() else k, MAX_RESOLUTION)
        kernel = self.blur_kernel
        if not isinstance(kernel, list | tuple) or not 1 <= len(kernel) <= 8:
            raise ValueError(f"blur_kernel must be 1 to 8 integers, got {kernel!r}")
        for k in kernel:
            _bounded_int("a blur_kernel tap", k, 1024)
        for name in ("lr_mlp", "conv_clamp"):
            v = getattr(self, name)
            real = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
            if not ((v is None and name == "conv_clamp") or (real and v > 0)):
                raise ValueError(f"{name} must be a positive number, got {v!r}")

    @property
    def log_size(self) -> int:
        return int(math.log2(self.resolution))

    @property
    def n_latent(self) -> int:
        return self.log_size * 2 - 2

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = {str(k): v for k, v in self.widths.items()}
        d["blur_kernel"] = list(self.blur_kernel)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> StyleGAN2Config:
        if not isinstance(d, dict):
            raise ValueError(f"a StyleGAN2 config must be an object, got {type(d).__name__}")
        unknown = sorted(set(map(str, d)) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown StyleGAN2 config field(s): {', '.join(unknown)}")
        return cls(**d)


# --- Finite-impulse-response resampling (upfirdn2d, in plain PyTorch) ---------------------


def make_kernel(k: tuple[int, ...] | list[int]) -> torch.Tensor:
    t = torch.tensor(k, dtype=torch.float32)
    t = t[None, :] * t[:, None]
    return t / t.sum()


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative crops), filter, then keep every ``down``-th."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, [p0, p1, p0, p1])
    kh, kw = kernel.shape
    weight = torch.flip(kernel, [0, 1]).to(x.dtype).expand(c, 1, kh, kw)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


class Blur(nn.Module):
    def __init__(self, kernel: tuple[int, ...], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * upsample_factor**2
        self.register_buffer("kernel", k, persistent=False)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self, kernel: tuple[int, ...], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2, persistent=False)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class Downsample(nn.Module):
    def __init__(self, kernel: tuple[int, ...], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel), persistent=False)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, down=self.factor, pad=self.pad)


# --- Equalised-learning-rate layers -------------------------------------------------------


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape).to(x.dtype), 0.2) * SQRT2


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class EqualLinear(nn.Module):
    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: bool = False,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            return (
                fused_leaky_relu(out, bias) if bias is not None else F.leaky_relu(out, 0.2) * SQRT2
            )
        return F.linear(x, self.weight * self.scale, bias)


class EqualConv2d(nn.Module):
    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0, bias=True
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.scale = 1 / math.sqrt(in_ch * kernel**2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(
            x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding
        )


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """Style-modulated (and optionally demodulated) convolution, optionally upsampling x2."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: tuple[int, ...] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_ch, out_ch, kernel
        self.upsample = upsample
        self.demodulate = demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel - 1)
            self.blur = Blur(
                blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=2
            )
        self.scale = 1 / math.sqrt(in_ch * kernel**2)
        self.padding = kernel // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel, kernel))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        out, demod = self.undemodulated(x, style)
        return out if demod is None else out * demod[:, :, None, None].to(out.dtype)

    def undemodulated(
        self, x: torch.Tensor, style: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The modulated convolution before demodulation, and the demodulation factors
        ``(N, out)`` (None without demodulation), so that a caller can fuse them into its
        next operation."""
        s = self.modulation(style)  # (N, in)
        weight = self.scale * self.weight[0]  # (out, in, k, k)
        if self.kernel_size == 1 and not self.upsample:
            out = _pointwise(x, s[:, None, :] * weight[None, :, :, 0, 0])
        else:
            # Under autocast the convolutions return bfloat16; the elementwise operations
            # keep their input's dtype instead of promoting to float32 (1.3-1.5x faster).
            x = x * s[:, :, None, None].to(x.dtype)
            if self.upsample:
                out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
                out = self.blur(out)
            else:
                out = F.conv2d(x, weight, padding=self.padding)
        if not self.demodulate:
            return out, None
        w2 = weight.pow(2).sum(dim=(2, 3))  # (out, in)
        return out, torch.rsqrt(s.pow(2) @ w2.t() + 1e-8)  # (N, out)


def _pointwise(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution with a weight per image, ``(N, out, in)``, as one batched matrix
    product: the modulation is folded into the weight, not applied to the activations."""
    n, c, h, w = x.shape
    weight = weight.to(x.dtype)
    if x.is_contiguous(memory_format=torch.channels_last):
        flat = x.permute(0, 2, 3, 1).reshape(n, h * w, c)
        return torch.bmm(flat, weight.transpose(1, 2)).reshape(n, h, w, -1).permute(0, 3, 1, 2)
    return torch.bmm(weight, x.reshape(n, c, h * w)).reshape(n, -1, h, w)


class NoiseInjection(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            n, _, h, w = x.shape
            noise = x.new_empty(n, 1, h, w).normal_()
        return x + (self.weight * noise).to(x.dtype)


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, n: int) -> torch.Tensor:
        return self.input.expand(n, -1, -1, -1)


def _clamp(x: torch.Tensor, clamp: float | None) -> torch.Tensor:
    return x if clamp is None else x.clamp(-clamp, clamp)


class StyledConv(nn.Module):
    def __init__(
        self, in_ch, out_ch, kernel, style_dim, upsample=False, blur_kernel=(1, 3, 3, 1), clamp=None
    ):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel, style_dim, True, upsample, blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)
        self.clamp = clamp

    def forward(self, x, style, noise=None):
        """``lrelu(demod * conv + noise + bias) * sqrt 2`` with the factor sqrt 2 folded
        into the others (``lrelu(a x) = a lrelu(x)`` for ``a > 0``): three elementwise
        passes instead of seven (about 1.2x faster forward and backward on a CPU)."""
        out, demod = self.conv.undemodulated(x, style)
        if noise is None:
            n, _, h, w = out.shape
            noise = out.new_empty(n, 1, h, w).normal_()
        bias = (self.activate.bias * SQRT2).view(1, -1, 1, 1).to(out.dtype)
        out = torch.addcmul(bias, out, (demod * SQRT2)[:, :, None, None].to(out.dtype))
        out = out.add_((self.noise.weight * SQRT2 * noise).to(out.dtype))
        return _clamp(F.leaky_relu(out, 0.2), self.clamp)


class ToRGB(nn.Module):
    def __init__(
        self, in_ch, style_dim, channels=3, upsample=True, blur_kernel=(1, 3, 3, 1), clamp=None
    ):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_ch, channels, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.clamp = clamp

    def forward(self, x, style, skip=None):
        out = _clamp(self.conv(x, style) + self.bias, self.clamp)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class StyleGAN2(nn.Module):
    """The StyleGAN2 generator network (mapping + synthesis), rosinality's parameter names."""

    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        self.config = cfg = config
        ch, k, d, c = cfg.widths, cfg.blur_kernel, cfg.style_dim, cfg.conv_clamp
        self.style = nn.Sequential(
            PixelNorm(),
            *[EqualLinear(d, d, lr_mul=cfg.lr_mlp, activation=True) for _ in range(cfg.n_mlp)],
        )
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, d, blur_kernel=k, clamp=c)
        self.to_rgb1 = ToRGB(ch[4], d, cfg.channels, upsample=False, clamp=c)
        self.num_layers = (cfg.log_size - 2) * 2 + 1
        self.n_latent = cfg.n_latent
        self.noises = nn.Module()
        for i in range(self.num_layers):
            res = (i + 5) // 2
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, 2**res, 2**res))
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = ch[4]
        for i in range(3, cfg.log_size + 1):
            out_ch = ch[2**i]
            self.convs.append(
                StyledConv(in_ch, out_ch, 3, d, upsample=True, blur_kernel=k, clamp=c)
            )
            self.convs.append(StyledConv(out_ch, out_ch, 3, d, blur_kernel=k, clamp=c))
            self.to_rgbs.append(ToRGB(out_ch, d, cfg.channels, clamp=c))
            in_ch = out_ch

    def noise_shapes(self) -> list[tuple[int, int, int]]:
        return [tuple(getattr(self.noises, f"noise_{i}").shape[1:]) for i in range(self.num_layers)]

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """``z (N, D)`` to ``w (N, D)``."""
        return self.style(z)

    def mean_w(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        z = torch.randn(n, self.config.style_dim, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            return self.mapping(z.to(self.input.input.device)).mean(0)

    def synthesis(
        self,
        w: torch.Tensor,
        noise: list[torch.Tensor | None] | None = None,
        randomize_noise: bool = False,
        offsets: dict[int, torch.Tensor] | None = None,
        features: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Images from ``w (N, D)`` or ``w+ (N, n_latent, D)``; noise per layer, else stored.

        Feature map ``k`` is the output of the ``k``-th resolution block (4x4 first);
        ``offsets[k]`` is added to it, and ``features`` receives each before its offset.
        """

        def shift(x: torch.Tensor, k: int) -> torch.Tensor:
            if features is not None:
                features.append(x)
            return x + offsets[k] if offsets and k in offsets else x

        if w.ndim == 2:
            w = w[:, None].expand(-1, self.n_latent, -1)
        if noise is None:
            noise = (
                [None] * self.num_layers
                if randomize_noise
                else [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
            )
        n = w.shape[0]
        # channels-last activations: the nuclei generator's forward and backward at 64
        # images runs 1.2x faster on this project's CPU, in float32 and in bfloat16
        out = self.input(n).contiguous(memory_format=torch.channels_last)
        out = shift(self.conv1(out, w[:, 0], _batch(noise[0], n)), 0)
        skip = self.to_rgb1(out, w[:, 1])
        i = 1
        for conv1, conv2, to_rgb in zip(
            self.convs[::2], self.convs[1::2], self.to_rgbs, strict=True
        ):
            out = conv1(out, w[:, i], _batch(noise[i], n))
            out = shift(conv2(out, w[:, i + 1], _batch(noise[i + 1], n)), (i + 1) // 2)
            skip = to_rgb(out, w[:, i + 2], skip)
            i += 2
        return skip

    def forward(
        self,
        z: torch.Tensor,
        truncation: float = 1.0,
        w_avg: torch.Tensor | None = None,
        randomize_noise: bool = True,
    ) -> torch.Tensor:
        w = self.mapping(z)
        if truncation < 1 and w_avg is not None:
            w = w_avg + truncation * (w - w_avg)
        return self.synthesis(w, randomize_noise=randomize_noise)


def _batch(noise: torch.Tensor | None, n: int) -> torch.Tensor | None:
    if noise is None or noise.shape[0] == n:
        return noise
    return noise.expand(n, -1, -1, -1)


LAYOUTS = ("w+", "w")


def gaussian_fit(net: StyleGAN2, n: int = 100_000, batch: int = 10_000, seed: int = 0):
    """Mean and std of the mapping's output with its last leaky ReLU undone (PULSE)."""
    gen = torch.Generator().manual_seed(seed)
    device = net.input.input.device
    total = torch.zeros(net.config.style_dim, dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    done = 0
    with torch.no_grad():
        while done < n:
            m = min(batch, n - done)
            z = torch.randn(m, net.config.style_dim, generator=gen).to(device)
            u = F.leaky_relu(net.mapping(z) / SQRT2, 5.0).double().cpu()
            total += u.sum(0)
            total_sq += u.pow(2).sum(0)
            done += m
    mean = total / n
    std = (total_sq / n - mean.pow(2)).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()


class StyleGAN2Generator(DomainGenerator):
    """A StyleGAN2 seen by the search: Gaussianised ``w+`` or ``w`` latents, trainable noise."""

    def __init__(
        self,
        net: StyleGAN2,
        card: ModelCard,
        layout: str = "w+",
        gaussian: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.net = net
        self.card = card
        cfg = net.config
        self.resolution = (cfg.resolution, cfg.resolution)
        self.channels = cfg.channels
        self.layout = layout
        self.latent_shape = (cfg.n_latent, cfg.style_dim) if layout == "w+" else (cfg.style_dim,)
        self.geocross = layout == "w+"
        mean, std = gaussian if gaussian is not None else gaussian_fit(net)
        self.register_buffer("gauss_mean", mean.clone())
        self.register_buffer("gauss_std", std.clone())

    def noise_shapes(self) -> list[tuple[int, ...]]:
        return self.net.noise_shapes()

    def to_w(self, latents: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(latents * self.gauss_std + self.gauss_mean, 0.2) * SQRT2

    def feature_shapes(self) -> list[tuple[int, ...]]:
        """The output of every resolution block, 4x4 first."""
        widths = self.net.config.widths
        return [(widths[r], r, r) for r in sorted(widths)]

    def synthesize(
        self,
        latents: torch.Tensor,
        noise: list[torch.Tensor] | None = None,
        offsets: dict[int, torch.Tensor] | None = None,
        features: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        img = self.net.synthesis(
            self.to_w(latents), noise=noise, offsets=offsets, features=features
        )
        return img.clamp(-1, 1)
