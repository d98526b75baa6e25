"""The StyleGAN2 residual discriminator (rosinality's layout), with equalised learning rate."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..generators.stylegan2 import (
    Blur,
    EqualConv2d,
    EqualLinear,
    FusedLeakyReLU,
    StyleGAN2Config,
)


class ConvLayer(nn.Sequential):
    def __init__(self, in_ch, out_ch, kernel, downsample=False, bias=True, activate=True):
        layers: list[nn.Module] = []
        stride, padding = 1, kernel // 2
        if downsample:
            p = 4 - 2 + (kernel - 1)
            layers.append(Blur((1, 3, 3, 1), pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        layers.append(
            EqualConv2d(in_ch, out_ch, kernel, stride, padding, bias=bias and not activate)
        )
        if activate:
            layers.append(FusedLeakyReLU(out_ch))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class Discriminator(nn.Module):
    """Real/fake logits for ``(N, channels, R, R)`` images in [-1, 1]."""

    def __init__(self, config: StyleGAN2Config, stddev_group: int = 4):
        super().__init__()
        ch = config.widths
        size = config.resolution
        blocks: list[nn.Module] = [ConvLayer(config.channels, ch[size], 1)]
        in_ch = ch[size]
        for i in range(config.log_size, 2, -1):
            out_ch = ch[2 ** (i - 1)]
            blocks.append(ResBlock(in_ch, out_ch))
            in_ch = out_ch
        self.convs = nn.Sequential(*blocks)
        self.stddev_group = stddev_group
        self.final_conv = ConvLayer(in_ch + 1, ch[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[4] * 16, ch[4], activation=True), EqualLinear(ch[4], 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs(x)
        n, c, h, w = out.shape
        group = min(n, self.stddev_group)
        while n % group:
            group -= 1
        std = out.view(group, -1, 1, c, h, w)
        std = torch.sqrt(std.var(0, unbiased=False) + 1e-8).mean(dim=(2, 3, 4), keepdim=True)
        std = std.squeeze(2).repeat(group, 1, h, w)
        out = self.final_conv(torch.cat([out, std], 1))
        return self.final_linear(out.flatten(1))
