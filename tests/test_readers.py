"""Checkpoint readers: rosinality ``.pt`` and NVlabs ``.pkl`` give the images their own code
would, and a crafted pickle is refused before anything in it runs.

Each test writes its tiny random model in the format itself and compares our generator with
an independent reference forward written here from the format's published code.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import pickle
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_pulse.generators import load, nvlabs, registry, rosinality
from napari_pulse.generators.safe_pickle import UnsafeCheckpointError, torch_load
from napari_pulse.generators.stylegan2 import StyleGAN2Generator

pytestmark = pytest.mark.usefixtures("one_thread")
SQRT2 = math.sqrt(2)
TOL = 1e-5


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_PULSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "_loaded", {})


def make_kernel(k):
    k = torch.tensor(k, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


# --- rosinality/stylegan2-pytorch: state dict layout and reference forward ----------------


def rosinality_state(seed, channels, widths, d=8, n_mlp=2):
    """A random generator state dict in rosinality's key layout (``Generator.state_dict()``)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    sd = {}
    for i in range(1, n_mlp + 1):
        sd[f"style.{i}.weight"] = r(d, d) / 0.01  # EqualLinear(lr_mul=0.01) init
        sd[f"style.{i}.bias"] = r(d)
    c4 = widths[4]
    sd["input.input"] = r(1, c4, 4, 4)

    def modulation(p, cin):
        sd[f"{p}.modulation.weight"] = r(cin, d)
        sd[f"{p}.modulation.bias"] = 1 + 0.2 * r(cin)

    def styled(p, cin, cout, up):
        sd[f"{p}.conv.weight"] = r(1, cout, cin, 3, 3)
        if up:
            sd[f"{p}.conv.blur.kernel"] = make_kernel([1, 3, 3, 1]) * 4
        modulation(f"{p}.conv", cin)
        sd[f"{p}.noise.weight"] = 0.5 * r(1)
        sd[f"{p}.activate.bias"] = 0.2 * r(cout)

    def rgb(p, cin, up):
        if up:
            sd[f"{p}.upsample.kernel"] = make_kernel([1, 3, 3, 1]) * 4
        sd[f"{p}.conv.weight"] = r(1, channels, cin, 1, 1)
        modulation(f"{p}.conv", cin)
        sd[f"{p}.bias"] = 0.2 * r(1, channels, 1, 1)

    styled("conv1", c4, c4, False)
    rgb("to_rgb1", c4, False)
    res = sorted(widths)
    cin = c4
    for j, rr in enumerate(res[1:]):
        styled(f"convs.{2 * j}", cin, widths[rr], True)
        styled(f"convs.{2 * j + 1}", widths[rr], widths[rr], False)
        rgb(f"to_rgbs.{j}", widths[rr], True)
        cin = widths[rr]
    for i in range(2 * len(res) - 1):
        size = 2 ** ((i + 5) // 2)
        sd[f"noises.noise_{i}"] = r(1, 1, size, size)
    return sd


def upfirdn2d_native(x, kernel, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1):
    """rosinality's op/upfirdn2d.py ``upfirdn2d_native``."""
    _, channel, in_h, in_w = x.shape
    x = x.reshape(-1, in_h, in_w, 1)
    _, in_h, in_w, minor = x.shape
    kernel_h, kernel_w = kernel.shape
    out = x.view(-1, in_h, 1, in_w, 1, minor)
    out = F.pad(out, [0, 0, 0, up_x - 1, 0, 0, 0, up_y - 1])
    out = out.view(-1, in_h * up_y, in_w * up_x, minor)
    out = F.pad(out, [0, 0, max(pad_x0, 0), max(pad_x1, 0), max(pad_y0, 0), max(pad_y1, 0)])
    out = out[
        :,
        max(-pad_y0, 0) : out.shape[1] - max(-pad_y1, 0),
        max(-pad_x0, 0) : out.shape[2] - max(-pad_x1, 0),
        :,
    ]
    out = out.permute(0, 3, 1, 2)
    out = out.reshape([-1, 1, in_h * up_y + pad_y0 + pad_y1, in_w * up_x + pad_x0 + pad_x1])
    w = torch.flip(kernel, [0, 1]).view(1, 1, kernel_h, kernel_w)
    out = F.conv2d(out, w)
    out = out.reshape(
        -1,
        minor,
        in_h * up_y + pad_y0 + pad_y1 - kernel_h + 1,
        in_w * up_x + pad_x0 + pad_x1 - kernel_w + 1,
    )
    out = out.permute(0, 2, 3, 1)
    out = out[:, ::down_y, ::down_x, :]
    out_h = (in_h * up_y + pad_y0 + pad_y1 - kernel_h + down_y) // down_y
    out_w = (in_w * up_x + pad_x0 + pad_x1 - kernel_w + down_x) // down_x
    return out.view(-1, channel, out_h, out_w)


def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    return upfirdn2d_native(x, kernel, up, up, down, down, pad[0], pad[1], pad[0], pad[1])


def fused_leaky_relu(x, bias):
    return F.leaky_relu(x + bias.view(1, -1, *[1] * (x.ndim - 2)), 0.2) * SQRT2


def equal_linear(sd, p, x, lr_mul=1.0, activation=False):
    w = sd[f"{p}.weight"]
    scale = lr_mul / math.sqrt(w.shape[1])
    if activation:
        return fused_leaky_relu(F.linear(x, w * scale), sd[f"{p}.bias"] * lr_mul)
    return F.linear(x, w * scale, bias=sd[f"{p}.bias"] * lr_mul)


def ros_modulated_conv(sd, p, x, style, demodulate=True, upsample=False):
    """rosinality's fused ModulatedConv2d: one grouped conv with per-sample weights."""
    batch, cin, h, w = x.shape
    weight = sd[f"{p}.weight"]
    cout, k = weight.shape[1], weight.shape[-1]
    style = equal_linear(sd, f"{p}.modulation", style).view(batch, 1, cin, 1, 1)
    weight = (1 / math.sqrt(cin * k**2)) * weight * style
    if demodulate:
        demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
        weight = weight * demod.view(batch, cout, 1, 1, 1)
    weight = weight.view(batch * cout, cin, k, k)
    x = x.view(1, batch * cin, h, w)
    if upsample:
        weight = weight.view(batch, cout, cin, k, k).transpose(1, 2)
        weight = weight.reshape(batch * cin, cout, k, k)
        out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=batch)
        out = out.view(batch, cout, *out.shape[2:])
        pad = (4 - 2) - (k - 1)
        return upfirdn2d(out, sd[f"{p}.blur.kernel"], pad=((pad + 1) // 2 + 1, pad // 2 + 1))
    out = F.conv2d(x, weight, padding=k // 2, groups=batch)
    return out.view(batch, cout, h, w)


def ros_styled_conv(sd, p, x, style, noise, upsample=False):
    out = ros_modulated_conv(sd, f"{p}.conv", x, style, upsample=upsample)
    out = out + sd[f"{p}.noise.weight"] * noise
    return fused_leaky_relu(out, sd[f"{p}.activate.bias"])


def ros_to_rgb(sd, p, x, style, skip=None):
    out = ros_modulated_conv(sd, f"{p}.conv", x, style, demodulate=False) + sd[f"{p}.bias"]
    if skip is not None:
        kernel = sd[f"{p}.upsample.kernel"]
        pad = kernel.shape[0] - 2
        out = out + upfirdn2d(skip, kernel, up=2, pad=((pad + 1) // 2 + 1, pad // 2))
    return out


def ros_mapping(sd, z, lr_mlp=0.01):
    x = z * torch.rsqrt(torch.mean(z**2, dim=1, keepdim=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in sd:
        x = equal_linear(sd, f"style.{i}", x, lr_mul=lr_mlp, activation=True)
        i += 1
    return x


def ros_synthesis(sd, latent):
    """rosinality's ``Generator.forward`` from ``latent (N, n_latent, D)``, stored noise."""
    n_rgbs = len([k for k in sd if re.fullmatch(r"to_rgbs\.\d+\.bias", k)])
    noise = [sd[f"noises.noise_{i}"] for i in range(2 * n_rgbs + 1)]
    out = sd["input.input"].repeat(latent.shape[0], 1, 1, 1)
    out = ros_styled_conv(sd, "conv1", out, latent[:, 0], noise[0])
    skip = ros_to_rgb(sd, "to_rgb1", out, latent[:, 1])
    i = 1
    for j in range(n_rgbs):
        out = ros_styled_conv(sd, f"convs.{2 * j}", out, latent[:, i], noise[i], upsample=True)
        out = ros_styled_conv(sd, f"convs.{2 * j + 1}", out, latent[:, i + 1], noise[i + 1])
        skip = ros_to_rgb(sd, f"to_rgbs.{j}", out, latent[:, i + 2], skip)
        i += 2
    return skip


WIDTHS = {4: 16, 8: 16, 16: 8}


def _compare(gen: StyleGAN2Generator, mapping, synthesis, d=8):
    g = torch.Generator().manual_seed(5)
    z = torch.randn(3, d, generator=g)
    w_plus = torch.randn(3, gen.net.n_latent, d, generator=g)  # a different w per layer
    with torch.no_grad():
        ours_w, ref_w = gen.net.mapping(z), mapping(z)
        ours, ref = gen.net.synthesis(w_plus), synthesis(w_plus)
        ours_z = gen.net.synthesis(ours_w)
        ref_z = synthesis(ref_w[:, None].expand(-1, gen.net.n_latent, -1))
    assert ours.shape == ref.shape and ref.abs().max() > 0.5  # not a degenerate image
    assert (ours_w - ref_w).abs().max() < TOL
    assert (ours - ref).abs().max() < TOL
    assert (ours_z - ref_z).abs().max() < TOL


@pytest.mark.parametrize("channels", [3, 1])
def test_rosinality_training_checkpoint_matches_reference(tmp_path, channels):
    sd = rosinality_state(0, channels, WIDTHS)
    other = rosinality_state(1, channels, WIDTHS)
    path = tmp_path / "ckpt.pt"
    torch.save(
        {
            "g": other,
            "d": {},
            "g_ema": sd,
            "g_optim": {"state": {}, "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99)}]},
            "args": argparse.Namespace(size=16, n_mlp=2, latent=8, channel_multiplier=2),
            "ada_aug_p": 0.0,
        },
        path,
    )
    gen = load(path)
    assert isinstance(gen, StyleGAN2Generator)
    cfg = gen.net.config
    assert (cfg.resolution, cfg.channels, cfg.style_dim, cfg.n_mlp) == (16, channels, 8, 2)
    assert cfg.widths == WIDTHS and gen.card.extra["format"] == "rosinality"
    assert gen.card.name == "ckpt" and gen.resolution == (16, 16)
    _compare(gen, lambda z: ros_mapping(sd, z), lambda w: ros_synthesis(sd, w))
    x = gen.synthesize(gen.sample_latents(2, torch.Generator().manual_seed(0)))
    assert x.shape == (2, channels, 16, 16)


def test_rosinality_bare_state_dict_and_config_inference(tmp_path):
    sd = rosinality_state(2, 3, {4: 8, 8: 8, 16: 8, 32: 4}, d=6, n_mlp=3)
    path = tmp_path / "bare.pth"
    torch.save(sd, path)
    gen = rosinality.load_rosinality(path)
    cfg = gen.net.config
    assert (cfg.resolution, cfg.style_dim, cfg.n_mlp) == (32, 6, 3)
    _compare(gen, lambda z: ros_mapping(sd, z), lambda w: ros_synthesis(sd, w), d=6)


def test_channel_multiplier_from_widths():
    base = {4: 512, 8: 512, 16: 512, 32: 512}
    assert rosinality.channel_multiplier({**base, 64: 512, 128: 256}) == 2
    assert rosinality.channel_multiplier({**base, 64: 256, 128: 128, 256: 64}) == 1
    assert rosinality.channel_multiplier(WIDTHS) is None


def test_torch_file_with_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": Evil(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
        load(path)
    assert not marker.exists()


# --- NVlabs stylegan2-ada-pytorch: persistent-object pickles and reference forward -----------


def _reconstruct_persistent_obj(meta):
    """What NVlabs' hook does first: exec the module source. Must never be reached."""
    exec(meta["module_src"], {})  # noqa: S102 - the point of the test is that this never runs
    raise AssertionError("the persistence hook was called")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class EasyDict(dict):
    pass


EasyDict.__module__ = "dnnlib.util"


class Persistent(nn.Module):
    """Pickles like NVlabs' ``persistence.persistent_class`` decorator."""

    module_src = ""

    def __reduce__(self):
        fields = list(object.__reduce__(self))
        fields += [None] * max(3 - len(fields), 0)
        meta = dict(
            type="class",
            version=6,
            module_src=Persistent.module_src,
            class_name=type(self).__name__,
            state=fields[2],
        )
        return (_reconstruct_persistent_obj, (meta,))


def setup_filter(f=(1, 3, 3, 1)):
    f = torch.as_tensor(f, dtype=torch.float32)
    f = f.ger(f)
    return f / f.sum()


def upfirdn2d_ref(x, f, up=1, padding=(0, 0, 0, 0), gain=1):
    """NVlabs' torch_utils/ops/upfirdn2d.py ``_upfirdn2d_ref`` (2-D filter, no down)."""
    n, c, h, w = x.shape
    px0, px1, py0, py1 = padding
    x = x.reshape([n, c, h, 1, w, 1])
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
    x = x.reshape([n, c, h * up, w * up])
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    f = (f * (gain ** (f.ndim / 2))).flip([0, 1])
    f = f[None, None].repeat([c, 1, 1, 1])
    return F.conv2d(x, f, groups=c)


def conv2d_resample(x, w, f, up, padding, groups):
    """NVlabs' ``conv2d_resample`` for up in (1, 2), no down, its weight-flip conventions."""
    if up == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    out_ch, in_per_group, kh, kw = w.shape
    fw = f.shape[-1]
    px0 = padding + (fw + up - 1) // 2 - (kw - 1)
    px1 = padding + (fw - up) // 2 - (kw - up)
    pxt = max(min(-px0, -px1), 0)
    w = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
    w = w.reshape(groups * in_per_group, out_ch // groups, kh, kw)
    x = F.conv_transpose2d(x, w, stride=up, padding=pxt, groups=groups)
    p = (px0 + pxt, px1 + pxt, px0 + pxt, px1 + pxt)
    return upfirdn2d_ref(x, f, padding=p, gain=up**2)


def modulated_conv2d(x, weight, styles, noise=None, up=1, padding=0, f=None, demodulate=True):
    """NVlabs' fused ``modulated_conv2d`` (float32)."""
    batch = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        w = w * dcoefs.reshape(batch, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_ch, kh, kw)
    x = conv2d_resample(x, w, f, up, padding, groups=batch)
    x = x.reshape(batch, -1, *x.shape[2:])
    return x + noise if noise is not None else x


def bias_act(x, b, lrelu=False, clamp=None):
    x = x + b.reshape(1, -1, *[1] * (x.ndim - 2))
    if lrelu:
        x = F.leaky_relu(x, 0.2) * SQRT2
    return x.clamp(-clamp, clamp) if clamp is not None else x


def perturbed(t, g, scale=0.2):
    return t + scale * torch.randn(t.shape, generator=g)


class FullyConnectedLayer(Persistent):
    def __init__(self, i, o, g, activation="linear", lr_multiplier=1, bias_init=0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([o, i], generator=g) / lr_multiplier)
        self.bias = nn.Parameter(perturbed(torch.full([o], np.float32(bias_init)), g))
        self.weight_gain = lr_multiplier / np.sqrt(i)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight * self.weight_gain
        b = self.bias * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, lrelu=True)


class MappingNetwork(Persistent):
    def __init__(self, z_dim, w_dim, num_ws, g, num_layers=8, lr_multiplier=0.01):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, 0, w_dim, num_ws
        self.num_layers = num_layers
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                w_dim, w_dim, g, activation="lrelu", lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.randn([w_dim], generator=g))

    def forward(self, z):
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        return x


class SynthesisLayer(Persistent):
    def __init__(self, cin, cout, w_dim, resolution, g, up=1, conv_clamp=None):
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.use_noise, self.activation, self.padding = True, "lrelu", 1
        self.register_buffer("resample_filter", setup_filter())
        self.affine = FullyConnectedLayer(w_dim, cin, g, bias_init=1)
        self.weight = nn.Parameter(torch.randn([cout, cin, 3, 3], generator=g))
        self.register_buffer("noise_const", torch.randn([resolution, resolution], generator=g))
        self.noise_strength = nn.Parameter(0.5 * torch.randn([], generator=g))
        self.bias = nn.Parameter(0.2 * torch.randn([cout], generator=g))

    def forward(self, x, w):
        styles = self.affine(w)
        noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, noise, self.up, 1, self.resample_filter)
        return bias_act(x, self.bias, lrelu=True, clamp=self.conv_clamp)


class ToRGBLayer(Persistent):
    def __init__(self, cin, cout, w_dim, g, conv_clamp=None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, cin, g, bias_init=1)
        self.weight = nn.Parameter(torch.randn([cout, cin, 1, 1], generator=g))
        self.bias = nn.Parameter(0.2 * torch.randn([cout], generator=g))
        self.weight_gain = 1 / np.sqrt(cin)

    def forward(self, x, w):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(Persistent):
    def __init__(self, cin, cout, w_dim, resolution, img_channels, g, conv_clamp=None):
        super().__init__()
        self.in_channels, self.resolution = cin, resolution
        self.architecture = "skip"
        self.register_buffer("resample_filter", setup_filter())
        self.num_conv, self.num_torgb = 0, 1
        if cin == 0:
            self.const = nn.Parameter(torch.randn([cout, resolution, resolution], generator=g))
        else:
            self.conv0 = SynthesisLayer(cin, cout, w_dim, resolution, g, 2, conv_clamp)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(cout, cout, w_dim, resolution, g, 1, conv_clamp)
        self.num_conv += 1
        self.torgb = ToRGBLayer(cout, img_channels, w_dim, g, conv_clamp)

    def forward(self, x, img, ws):
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter))
        else:
            x = self.conv0(x, next(w_iter))
            x = self.conv1(x, next(w_iter))
        if img is not None:  # upfirdn2d.upsample2d: padding [2, 1, 2, 1], gain 4
            fw, up = self.resample_filter.shape[-1], 2
            p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
            img = upfirdn2d_ref(img, self.resample_filter, up=2, padding=(p0, p1, p0, p1), gain=4)
        y = self.torgb(x, next(w_iter))
        return x, (img + y if img is not None else y)


class SynthesisNetwork(Persistent):
    def __init__(self, w_dim, img_resolution, img_channels, g, channel_base, channel_max, clamp):
        super().__init__()
        log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        self.num_ws = 0
        for res in self.block_resolutions:
            cin = channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(cin, channels[res], w_dim, res, img_channels, g, clamp)
            self.num_ws += block.num_conv + (res == img_resolution) * block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(self, ws):
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb))
            w_idx += block.num_conv
        return img


class Generator(Persistent):
    def __init__(self, seed, **kwargs):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self._init_args = ()
        self._init_kwargs = copy.deepcopy(kwargs)
        self.z_dim, self.c_dim, self.w_dim = kwargs["z_dim"], kwargs["c_dim"], kwargs["w_dim"]
        self.img_resolution = kwargs["img_resolution"]
        self.img_channels = kwargs["img_channels"]
        sk, mk = kwargs["synthesis_kwargs"], kwargs["mapping_kwargs"]
        self.synthesis = SynthesisNetwork(
            self.w_dim,
            self.img_resolution,
            self.img_channels,
            g,
            sk["channel_base"],
            sk["channel_max"],
            sk.get("conv_clamp"),
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(self.z_dim, self.w_dim, self.num_ws, g, mk["num_layers"])


def nvlabs_generator(seed, channels, conv_clamp=None):
    return Generator(
        seed,
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=16,
        img_channels=channels,
        mapping_kwargs=EasyDict(num_layers=2),
        synthesis_kwargs=EasyDict(
            channel_base=128, channel_max=16, num_fp16_res=4, conv_clamp=conv_clamp
        ),
    )


def set_clamp(net: nn.Module, value) -> None:
    for m in net.modules():
        if hasattr(m, "conv_clamp"):
            m.conv_clamp = value


def write_nvlabs_pickle(path: Path, data, marker: Path, monkeypatch) -> None:
    """Pickle ``data`` as NVlabs' training loop does, with module text that would make
    ``marker`` if executed; the stand-in modules exist only while pickling."""
    Persistent.module_src = (
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\nclass Generator: pass\n"
    )
    persistence = types.ModuleType("torch_utils.persistence")
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = EasyDict
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
        m.setitem(sys.modules, "torch_utils.persistence", persistence)
        m.setitem(sys.modules, "dnnlib", types.ModuleType("dnnlib"))
        m.setitem(sys.modules, "dnnlib.util", util)
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=3)  # Python 3.7's default, as NVlabs' pickles
    assert "torch_utils" not in sys.modules


@pytest.mark.parametrize(("channels", "conv_clamp"), [(3, None), (1, 0.6)])
def test_nvlabs_pickle_matches_reference_and_never_runs_its_code(
    tmp_path, monkeypatch, channels, conv_clamp
):
    marker = tmp_path / "module_src_ran"
    g_ema = nvlabs_generator(0, channels, conv_clamp).eval().requires_grad_(False)
    g = nvlabs_generator(1, channels, conv_clamp).eval().requires_grad_(False)
    snapshot = {
        "training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset"},
        "G": g,
        "D": None,
        "G_ema": g_ema,
        "augment_pipe": None,
    }
    path = tmp_path / "network-snapshot-000100.pkl"
    write_nvlabs_pickle(path, snapshot, marker, monkeypatch)
    assert b"torch_utils.persistence" in path.read_bytes()

    gen = load(path)
    assert not marker.exists()
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules
    cfg = gen.net.config
    assert (cfg.resolution, cfg.channels, cfg.style_dim, cfg.n_mlp) == (16, channels, 8, 2)
    assert cfg.widths == {4: 16, 8: 16, 16: 8} and cfg.lr_mlp == pytest.approx(0.01)
    assert cfg.conv_clamp == conv_clamp and gen.card.extra["format"] == "nvlabs"
    _compare(gen, g_ema.mapping, g_ema.synthesis)
    if conv_clamp is not None:  # the clamp changes this model's images: it was exercised
        w = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            clamped = g_ema.synthesis(w)
            set_clamp(g_ema, None)
            free = g_ema.synthesis(w)
        assert (clamped - free).abs().max() > 1e-2

    # The recorded module text is live: running it (as NVlabs' loader would) makes the marker.
    record = nvlabs.read_pickle(path)["G_ema"]
    assert isinstance(record, nvlabs.PersistentRecord) and record.class_name == "Generator"
    exec(record.module_src, {})  # noqa: S102
    assert marker.exists()


def test_nvlabs_constructor_arguments_must_agree_with_the_weights(tmp_path, monkeypatch):
    g = nvlabs_generator(0, 3)
    g._init_kwargs["synthesis_kwargs"]["channel_base"] = 256
    path = tmp_path / "odd.pkl"
    write_nvlabs_pickle(path, {"G_ema": g}, tmp_path / "ran", monkeypatch)
    with pytest.raises(ValueError, match="the pickle says channel widths"):
        load(path)
    g = nvlabs_generator(0, 3)
    g._init_kwargs["c_dim"] = 10
    write_nvlabs_pickle(path, {"G_ema": g}, tmp_path / "ran", monkeypatch)
    with pytest.raises(ValueError, match="conditional generators"):
        nvlabs.load_nvlabs(path)
    write_nvlabs_pickle(path, {"D": None, "G": None}, tmp_path / "ran", monkeypatch)
    with pytest.raises(ValueError, match="holds no NVlabs network 'G_ema'"):
        nvlabs.load_nvlabs(path)
    assert not (tmp_path / "ran").exists()


# --- crafted pickles -------------------------------------------------------------------


class Evil:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvilExec:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


class EvilStorage:
    """A tensor storage whose bytes hold a shell command."""

    def __init__(self, marker: Path):
        self.payload = pickle.dumps(Evil(marker))

    def __reduce__(self):
        from torch.storage import _load_from_bytes

        return (_load_from_bytes, (self.payload,))


@pytest.mark.parametrize("kind", ["system", "system-protocol5", "exec", "nested", "storage"])
def test_crafted_pickle_is_refused_and_nothing_runs(tmp_path, monkeypatch, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    if kind.startswith("system"):
        payload = {"G_ema": Evil(marker)}
    elif kind == "exec":
        payload = {"G_ema": EvilExec(marker)}
    elif kind == "storage":
        payload = {"G_ema": {"w": EvilStorage(marker)}}
    else:  # deep inside an otherwise well-formed NVlabs network
        g = nvlabs_generator(0, 3)
        g.synthesis.b8.conv0.evil = Evil(marker)
        payload = {"G_ema": g}
    if kind == "nested":
        write_nvlabs_pickle(path, payload, tmp_path / "src_ran", monkeypatch)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=5 if "5" in kind else 3))
    with pytest.raises(UnsafeCheckpointError, match="refusing to load") as info:
        load(path)
    assert "nothing in it was run" in str(info.value)
    if kind != "exec" and kind != "storage":
        assert "system" in str(info.value)  # names what it would have called
    assert not marker.exists() and not (tmp_path / "src_ran").exists()


def test_restricted_unpickler_reads_plain_tensor_pickles(tmp_path):
    t = nn.Parameter(torch.randn(3, 2), requires_grad=False)
    data = {"t": t, "s": set(), "n": np.float64(0.5), "a": np.arange(3.0)}
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps(data, protocol=3))
    back = nvlabs.read_pickle(path)
    assert torch.equal(back["t"], t) and back["n"] == 0.5 and list(back["a"]) == [0, 1, 2]


def test_torch_load_allows_namespace_only(tmp_path):
    path = tmp_path / "args.pt"
    torch.save({"args": argparse.Namespace(size=16), "x": torch.ones(2)}, path)
    assert torch_load(path)["args"].size == 16


def test_weights_only_false_appears_nowhere():
    root = Path(__file__).resolve().parents[1]
    needle = "weights_only=" + "False"
    hits = [
        str(p)
        for folder in ("src", "tests")
        for p in (root / folder).rglob("*.py")
        if needle in p.read_text(encoding="utf-8")
    ]
    assert hits == []
