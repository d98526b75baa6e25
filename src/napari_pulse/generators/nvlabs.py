"""Reader for NVlabs stylegan2-ada-pytorch network pickles (``.pkl``), without running them.

NVlabs pickles every network as a *persistent object*: a call to
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` whose ``meta`` holds the class
name, the full source text of the module that defines it, and the object's ``__dict__``.
Unpickling normally ``exec``\\ s that source. Here a :class:`RestrictedUnpickler` maps the
hook to :class:`PersistentRecord`, which only keeps ``meta`` as data, and ``dnnlib``'s
``EasyDict`` to a plain dict; every other global except tensor and container constructors
raises :class:`UnsafeCheckpointError`. Nothing from the file is imported or executed.

``G_ema``'s parameters and buffers are then renamed onto our :class:`StyleGAN2` (skip
architecture, unconditional, ``z_dim == w_dim``). The arithmetic is the same: NVlabs' affine
layers (bias init 1), runtime weight gains, mapping ``lr_multiplier`` (0.01 by default, read
from the file), transposed-conv upsampling followed by the [1, 3, 3, 1] FIR filter, skip
to-RGB upsampling, ``noise_const * noise_strength``, and ``conv_clamp``. NVlabs does not scale
demodulated conv weights by 1/sqrt(fan_in) as rosinality does; demodulation cancels that
scale except inside its 1e-8 epsilon, and our convolution modulates activations instead of
weights, so results agree to float32 rounding (tested below 1e-5), not bit for bit. Blocks
NVlabs runs in float16 on a GPU (``num_fp16_res``) run in float32 here, as with its
``force_fp32=True``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import cache
from .base import ModelCard
from .safe_pickle import UnsafeCheckpointError, restricted_load
from .stylegan2 import StyleGAN2, StyleGAN2Config, StyleGAN2Generator

__all__ = ["PersistentRecord", "UnsafeCheckpointError", "load_nvlabs", "read_pickle"]


@dataclass
class PersistentRecord:
    """An NVlabs persistent object kept as data: its source text is never executed."""

    type: str = ""
    version: int = 0
    module_src: str = ""
    class_name: str = ""
    state: dict = field(default_factory=dict)

    def child(self, *names: str) -> PersistentRecord:
        rec = self
        for name in names:
            sub = (rec.state.get("_modules") or {}).get(name)
            if not isinstance(sub, PersistentRecord):
                raise ValueError(f"the network has no submodule {'.'.join(names)!r}")
            rec = sub
        return rec


def _record(meta: Any) -> PersistentRecord:
    """Stand-in for ``torch_utils.persistence._reconstruct_persistent_obj``."""
    if not isinstance(meta, dict):
        raise UnsafeCheckpointError("a persistent-object record is not a dict of data")
    state = meta.get("state")
    return PersistentRecord(
        type=str(meta.get("type", "")),
        version=int(meta.get("version", 0)),
        module_src=str(meta.get("module_src", "")),
        class_name=str(meta.get("class_name", "")),
        state=dict(state) if isinstance(state, dict) else {},
    )


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict."""


NVLABS_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _record,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
}


def read_pickle(path: str | Path) -> Any:
    """The pickle's contents, persistent objects as :class:`PersistentRecord`."""
    return restricted_load(path, NVLABS_GLOBALS)


def flat_tensors(rec: PersistentRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """Parameters and buffers of a record tree under their ``state_dict`` names."""
    out: dict[str, torch.Tensor] = {}
    for kind in ("_parameters", "_buffers"):
        for name, t in (rec.state.get(kind) or {}).items():
            if isinstance(t, torch.Tensor):
                out[prefix + name] = t.detach().float()
    for name, sub in (rec.state.get("_modules") or {}).items():
        if isinstance(sub, PersistentRecord):
            out.update(flat_tensors(sub, f"{prefix}{name}."))
        elif sub is not None:
            raise ValueError(f"unexpected submodule {prefix}{name} of type {type(sub).__name__}")
    return out


def _kw(rec: PersistentRecord) -> dict:
    return dict(rec.state.get("_init_kwargs") or {})


_IGNORED = re.compile(r"^(mapping\.w_avg|synthesis\.b\d+\.(\w+\.)?resample_filter)$")


def infer_config(g: PersistentRecord, flat: dict[str, torch.Tensor]) -> StyleGAN2Config:
    """A :class:`StyleGAN2Config` for an NVlabs ``Generator`` record; clear errors otherwise."""
    kw, state = _kw(g), g.state
    mk, sk = dict(kw.get("mapping_kwargs") or {}), dict(kw.get("synthesis_kwargs") or {})
    if kw.get("c_dim", state.get("c_dim", 0)):
        raise ValueError("conditional generators (c_dim > 0) are not supported")
    blocks = sorted(int(m.group(1)) for k in flat if (m := re.match(r"synthesis\.b(\d+)\.", k)))
    if not blocks or blocks[0] != 4:
        raise ValueError(
            "not a StyleGAN2 synthesis network (no b4 block): only stylegan2-ada-pytorch "
            "generators are read (StyleGAN3 is not)"
        )
    resolutions = sorted(set(blocks))
    if sk.get("architecture", "skip") != "skip" or any(
        f"synthesis.b{r}.torgb.weight" not in flat for r in resolutions
    ):
        raise ValueError("only the 'skip' synthesis architecture (the default) is supported")
    if list(sk.get("resample_filter", [1, 3, 3, 1])) != [1, 3, 3, 1]:
        raise ValueError("only the [1, 3, 3, 1] resampling filter is supported")
    if mk.get("activation", "lrelu") != "lrelu" or sk.get("activation", "lrelu") != "lrelu":
        raise ValueError("only leaky-ReLU activations are supported")
    n_mlp = len([k for k in flat if re.match(r"mapping\.fc\d+\.weight$", k)])
    w_dim = int(flat["mapping.fc0.weight"].shape[1])
    for i in range(n_mlp):
        if tuple(flat[f"mapping.fc{i}.weight"].shape) != (w_dim, w_dim):
            raise ValueError("only mappings with z_dim == w_dim == layer width are supported")
    if any(flat[f"synthesis.b{r}.conv1.weight"].shape[-1] != 3 for r in resolutions):
        raise ValueError("only 3x3 synthesis convolutions are supported")
    fc0 = g.child("mapping", "fc0").state
    lr_mlp = float(fc0.get("bias_gain", mk.get("lr_multiplier", 0.01)))
    clamp = g.child("synthesis", "b4", "conv1").state.get("conv_clamp", sk.get("conv_clamp"))
    widths = {r: int(flat[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in resolutions}
    config = StyleGAN2Config(
        resolution=resolutions[-1],
        channels=int(flat[f"synthesis.b{resolutions[-1]}.torgb.weight"].shape[0]),
        style_dim=w_dim,
        n_mlp=n_mlp,
        widths=widths,
        lr_mlp=lr_mlp,
        conv_clamp=None if clamp is None else float(clamp),
    )
    _check_init_kwargs(kw, mk, sk, config)
    return config


def _check_init_kwargs(kw: dict, mk: dict, sk: dict, config: StyleGAN2Config) -> None:
    """The constructor arguments stored in the pickle must agree with the weights' shapes."""
    said = {
        "z_dim": kw.get("z_dim"),
        "w_dim": kw.get("w_dim"),
        "img_resolution": kw.get("img_resolution"),
        "img_channels": kw.get("img_channels"),
        "mapping num_layers": mk.get("num_layers"),
    }
    if "channel_base" in sk:
        base, top = int(sk["channel_base"]), int(sk.get("channel_max", 512))
        said["channel widths"] = {r: min(base // r, top) for r in config.widths}
    found = {
        "z_dim": config.style_dim,
        "w_dim": config.style_dim,
        "img_resolution": config.resolution,
        "img_channels": config.channels,
        "mapping num_layers": config.n_mlp,
        "channel widths": config.widths,
    }
    for name, value in said.items():
        if value is not None and value != found[name]:
            raise ValueError(f"the pickle says {name} = {value}, its weights {found[name]}")


def convert_state(flat: dict[str, torch.Tensor], config: StyleGAN2Config) -> dict:
    """Our :class:`StyleGAN2` state dict from NVlabs' parameter names."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        used.add(key)
        return flat[key]

    for i in range(config.n_mlp):
        out[f"style.{i + 1}.weight"] = take(f"mapping.fc{i}.weight")
        out[f"style.{i + 1}.bias"] = take(f"mapping.fc{i}.bias")
    out["input.input"] = take("synthesis.b4.const")[None]

    def modulated(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = take(f"{src}.weight")[None]
        out[f"{dst}.modulation.weight"] = take(f"{src}.affine.weight")
        out[f"{dst}.modulation.bias"] = take(f"{src}.affine.bias")

    def layer(src: str, dst: str, index: int, res: int) -> None:
        modulated(src, f"{dst}.conv")
        out[f"{dst}.activate.bias"] = take(f"{src}.bias")
        if f"{src}.noise_strength" in flat:  # use_noise=False layers have neither
            out[f"{dst}.noise.weight"] = take(f"{src}.noise_strength").reshape(1)
            out[f"noises.noise_{index}"] = take(f"{src}.noise_const").reshape(1, 1, res, res)
        else:
            out[f"{dst}.noise.weight"] = torch.zeros(1)
            out[f"noises.noise_{index}"] = torch.zeros(1, 1, res, res)

    def torgb(src: str, dst: str) -> None:
        modulated(src, f"{dst}.conv")
        out[f"{dst}.bias"] = take(f"{src}.bias").reshape(1, -1, 1, 1)

    layer("synthesis.b4.conv1", "conv1", 0, 4)
    torgb("synthesis.b4.torgb", "to_rgb1")
    for j in range(config.log_size - 2):
        res = 2 ** (j + 3)
        layer(f"synthesis.b{res}.conv0", f"convs.{2 * j}", 2 * j + 1, res)
        layer(f"synthesis.b{res}.conv1", f"convs.{2 * j + 1}", 2 * j + 2, res)
        torgb(f"synthesis.b{res}.torgb", f"to_rgbs.{j}")
    left = sorted(k for k in flat if k not in used and not _IGNORED.match(k))
    if left:
        raise ValueError(f"parameters with no place in StyleGAN2: {', '.join(left[:6])}")
    return out


def load_nvlabs(path: str | Path, layout: str = "w+", key: str = "G_ema") -> StyleGAN2Generator:
    """A search-ready generator from an NVlabs stylegan2-ada-pytorch ``.pkl`` file."""
    path = Path(path)
    data = read_pickle(path)
    g = data.get(key) if isinstance(data, dict) else None
    if not isinstance(g, PersistentRecord):
        found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path.name} holds no NVlabs network {key!r} (found: {found})")
    flat = flat_tensors(g)
    try:
        config = infer_config(g, flat)
        state = convert_state(flat, config)
    except KeyError as exc:
        raise ValueError(f"{path.name}: {key} is not a complete StyleGAN2 (no {exc})") from None
    net = StyleGAN2(config)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        msg = f"{path.name}: the weights do not fit the inferred StyleGAN2: {exc}"
        raise ValueError(msg) from None
    net.eval().requires_grad_(False)
    sha = cache.file_sha256(path)
    res = config.resolution
    card = ModelCard(
        name=path.stem,
        description=f"StyleGAN2 {res}x{res} read from {path.name} (NVlabs stylegan2-ada-pytorch)",
        normalization="range",
        extra={
            "format": "nvlabs",
            "source": str(path),
            "sha256": sha,
            "class_name": g.class_name,
            "persistence_version": g.version,
            "config": config.to_dict(),
        },
    )
    return StyleGAN2Generator(net, card, layout=layout, gaussian=cache.cached_gaussian(net, sha))
