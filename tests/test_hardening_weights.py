"""Damaged and malformed weight files: always a ValueError naming the file and what is
wrong, and a card cannot make the reader allocate what the file does not hold. Tiny random
networks throughout."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import napari_pulse
from napari_pulse.generators import ModelCard, load
from napari_pulse.generators import stylegan2 as sg2
from napari_pulse.generators.native import CARD_KEY, save_native

CONFIG = dict(resolution=16, channels=1, style_dim=8, n_mlp=2, widths={4: 8, 8: 8, 16: 4})


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> tuple[dict, dict]:
    """The tensors and card of a small valid native file."""
    torch.manual_seed(0)
    net = sg2.StyleGAN2(sg2.StyleGAN2Config(**CONFIG)).eval()
    path = save_native(tmp_path_factory.mktemp("w") / "ok.safetensors", net, ModelCard("ok"))
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        card = json.loads(f.metadata()[CARD_KEY])
    return tensors, card


def _native(tmp_path: Path, name: str, tensors: dict, card=None, raw: str | None = None) -> Path:
    path = tmp_path / f"{name}.safetensors"
    save_file(tensors, str(path), metadata={CARD_KEY: raw if raw is not None else json.dumps(card)})
    return path


def _refused(path: Path, match: str) -> None:
    data = path.read_bytes()
    with pytest.raises(ValueError, match=match) as info:
        load(path)
    assert path.name in str(info.value)
    assert path.read_bytes() == data  # the file is never changed


def _torch_zip(tmp_path: Path) -> bytes:
    torch.save({"netG_state_dict": {"a": torch.zeros(4)}}, tmp_path / "z.pt")
    return (tmp_path / "z.pt").read_bytes()


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("text.pt", b"hello, not weights", "not a readable torch generator file"),
        ("text.pth", b"\x00\x01\x02", "refusing to load"),  # a legacy pickle, not run
        ("text.pkl", b"hello, not weights", "not a readable pickle generator file"),
        ("empty.pt", b"", "the file is empty"),
        ("empty.pkl", b"", "the file is empty"),
        ("empty.safetensors", b"", "the file is empty"),
        ("junk.safetensors", b"\xff" * 64, "not a readable native generator file"),
        ("trunc.pkl", pickle.dumps({"x": list(range(100))})[:7], "not a readable pickle"),
        ("short.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{", "not a readable native"),
    ],
)
def test_damaged_files_are_value_errors(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    _refused(path, match)


def test_a_truncated_torch_zip_is_a_value_error(tmp_path):
    data = _torch_zip(tmp_path)
    for cut in (len(data) // 2, 30):
        path = tmp_path / f"cut{cut}.pt"
        path.write_bytes(data[:cut])
        _refused(path, "not a readable torch generator file")


@pytest.mark.parametrize(
    "raw, match",
    [
        ("[]", "must be a JSON object, got list"),
        ("null", "must be a JSON object, got NoneType"),
        ("3", "must be a JSON object, got int"),
        ('"card"', "must be a JSON object, got str"),
        ("[" * 100_000 + "]" * 100_000, "RecursionError"),
        ('{"a":' * 5000 + "1" + "}" * 5000, "RecursionError"),
        ("{not json", "Expecting property name"),
    ],
)
def test_malformed_cards_are_value_errors(tmp_path, good, raw, match):
    _refused(_native(tmp_path, "card", good[0], raw=raw), match)


def _edit(card: dict, **changes) -> dict:
    out = json.loads(json.dumps(card))
    for key, value in changes.items():
        where = out
        *parents, last = key.split(".")
        for p in parents:
            where = where[p]
        where[last] = value
    return out


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"config.style_dim": -1}, "style_dim must be an integer from 1 to 1024"),
        ({"config.style_dim": "8"}, "style_dim must be an integer"),
        ({"config.n_mlp": 0}, "n_mlp must be an integer from 1 to 16"),
        ({"config.n_mlp": 3}, "lacks tensors"),
        ({"config.widths": {"4": 8, "8": -8, "16": 4}}, "widths\\['8'\\] must be an integer"),
        ({"config.widths": {"4": 8, "8": 2048, "16": 4}}, "from 1 to 1024, got 2048"),
        ({"config.widths": {"4": 8, "8": 16, "16": 4}}, "other shapes"),
        ({"config.widths": [8, 8, 4]}, "widths must be a mapping"),
        ({"config.resolution": 8192, "resolution": [8192, 8192]}, "from 1 to 1024, got 8192"),
        ({"config.resolution": 32, "resolution": [32, 32]}, "widths lack resolutions"),
        ({"config.lr_mlp": "x"}, "lr_mlp must be a positive number"),
        ({"config.conv_clamp": -1}, "conv_clamp must be a positive number"),
        ({"config.blur_kernel": list(range(100))}, "blur_kernel must be 1 to 8"),
        ({"config.extra_field": 1}, "unknown StyleGAN2 config field"),
        ({"config": []}, "config must be an object"),
        ({"architecture": "vit"}, "unsupported architecture"),
        ({"name": None}, "'name' has the wrong type"),
        ({"name": ["x"]}, "'name' has the wrong type"),
        ({"normalization": 5}, "'normalization' has the wrong type"),
        ({"normalization": "log"}, "normalization 'log' is unknown"),
        ({"channels": 7}, "says channels 7, its config 1"),
        ({"extra": "x"}, "'extra' has the wrong type"),
    ],
)
def test_malformed_card_fields_are_value_errors(tmp_path, good, changes, match):
    _refused(_native(tmp_path, "edited", good[0], _edit(good[1], **changes)), match)


@pytest.mark.parametrize(
    "case", ["extra", "missing", "wrong-shape", "half-gaussian", "bad-gaussian"]
)
def test_wrong_tensors_are_value_errors(tmp_path, good, case):
    tensors = dict(good[0])
    first = sorted(tensors)[0]
    match = {"extra": "does not have", "missing": "lacks", "wrong-shape": "other shapes"}.get(
        case, "gaussian"
    )
    if case == "extra":
        tensors["extra"] = torch.zeros(2)
    elif case == "missing":
        tensors.pop(first)
    elif case == "wrong-shape":
        tensors[first] = torch.zeros(3, 3)
    elif case == "half-gaussian":
        tensors["gaussian.mean"] = torch.zeros(8)
        match = "half of a Gaussian fit"
    else:
        tensors["gaussian.mean"], tensors["gaussian.std"] = torch.zeros(3), torch.ones(3)
    _refused(_native(tmp_path, case, tensors, good[1]), match)


def test_a_card_cannot_make_the_reader_allocate(tmp_path, good, monkeypatch):
    """A tiny file whose card claims a 1024x1024 network of width 1024 is refused against its
    tensors on an unallocated (meta) network: no real network is ever built."""
    built: list[str] = []
    real_init = sg2.StyleGAN2.__init__

    def spy(self, config):
        built.append(str(torch.empty(0).device))
        real_init(self, config)

    monkeypatch.setattr(sg2.StyleGAN2, "__init__", spy)
    widths = {str(2**i): 1024 for i in range(2, 11)}
    card = _edit(good[1], **{"config.resolution": 1024, "config.widths": widths,
                             "resolution": [1024, 1024]})  # fmt: skip
    path = _native(tmp_path, "claims", good[0], card)
    assert path.stat().st_size < 200_000
    _refused(path, "lacks tensors")
    assert built == ["meta"]


def test_a_file_named_like_a_bundled_generator_is_recorded_by_path_and_hash(tmp_path, good):
    path = _native(tmp_path, "impostor", good[0], _edit(good[1], name="tiny"))
    img = (np.random.default_rng(0).random((8, 8)) * 255).astype(np.uint8)
    r = napari_pulse.upscale(img, generator=path, factor=2, steps=1, restarts=1)
    real = napari_pulse.upscale(img, generator="tiny", factor=2, steps=1, restarts=1)
    assert r.params["generator"] == "tiny"  # what its card says
    assert r.params["generator_file"] == str(path)
    assert real.params["generator_file"] is None
    assert len(r.params["generator_sha256"]) == 64
    assert r.params["generator_sha256"] != real.params["generator_sha256"]
