"""Training: data reading and crops, DiffAugment, the loop's checkpoints, resume and export.

Models here are tiny (16x16, narrow widths) and train for a few steps: these tests check
the mechanics, not the quality of a generator.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from napari_pulse.cli import main
from napari_pulse.generators.native import load_native, read_card
from napari_pulse.training.data import CropRule, CropSampler, held_out, list_images
from napari_pulse.training.diffaug import cutout, diff_augment, translation
from napari_pulse.training.discriminator import Discriminator
from napari_pulse.training.loop import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(resolution=16, channels=1, style_dim=16, n_mlp=2, widths={4: 16, 8: 16, 16: 8})


@pytest.fixture
def folder(tmp_path):
    """Six 40x40 images: 8-bit PNG, 16-bit TIFF, and RGB PNG, with bright blobs."""
    rng = np.random.default_rng(0)
    d = tmp_path / "images"
    d.mkdir()
    for i in range(6):
        a = rng.normal(10, 2, (40, 40))
        yy, xx = np.mgrid[:40, :40]
        for _ in range(3):
            cy, cx = rng.integers(5, 35, 2)
            a += 200 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18)
        if i % 3 == 0:
            Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(d / f"im{i}.png")
        elif i % 3 == 1:
            tifffile.imwrite(d / f"im{i}.tif", (a * 200).astype(np.uint16))
        else:
            rgb = np.stack([a, a * 0.5, a * 0.2], -1)
            Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(d / f"im{i}.png")
    (d / "notes.txt").write_text("not an image")
    return d


def test_holdout_split_is_stable_and_disjoint(tmp_path):
    names = [f"img{i:03d}.png" for i in range(1000)]
    share = np.mean([held_out(n, 0.1) for n in names])
    assert 0.07 < share < 0.13
    assert [held_out(n, 0.1) for n in names] == [held_out(n, 0.1) for n in names]
    for name in names[:40]:
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    train_files = list_images(tmp_path, 0.5, "train")
    hold = list_images(tmp_path, 0.5, "holdout")
    assert not set(train_files) & set(hold)
    assert len(train_files) + len(hold) == 40  # notes.txt is not an image
    assert all(held_out(p.name, 0.5) for p in hold)


def test_list_images_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        list_images(tmp_path / "missing")
    with pytest.raises(ValueError, match="no train images"):
        list_images(tmp_path)


def test_crops_are_normalised_augmented_and_mostly_foreground(folder):
    files = list_images(folder)
    sampler = CropSampler(files, 16, 1, rule=CropRule(0.25, 0.05, any_share=0.0), seed=1)
    batch = sampler.batch(64)
    assert batch.shape == (64, 1, 16, 16) and batch.dtype == np.float32
    assert batch.min() >= -1 and batch.max() <= 1
    fg = ((batch + 1) / 2 > 0.25).mean(axis=(1, 2, 3))
    assert (fg >= 0.05).mean() > 0.9
    rgb = CropSampler(files, 16, 3, rule=None, seed=1).batch(4)
    assert rgb.shape == (4, 3, 16, 16)


def test_dark_rule_keeps_stained_cells_on_white(tmp_path):
    """Brightfield: dark cells on a white field. The dark rule keeps crops with cells; the
    bright rule would keep nearly every crop (the background is bright)."""
    rng = np.random.default_rng(0)
    d = tmp_path / "bf"
    d.mkdir()
    for i in range(3):
        a = np.full((64, 64, 3), 240.0) + rng.normal(0, 3, (64, 64, 3))
        cy, cx = rng.integers(8, 56, 2)
        a[cy - 5 : cy + 5, cx - 5 : cx + 5] = (120, 60, 150)  # one purple cell
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(d / f"bf{i}.png")
    files = list_images(d)
    rule = CropRule(0.75, 0.05, any_share=0.0, dark=True)

    def share_with_a_cell(r: CropRule | None) -> float:
        unit = (CropSampler(files, 16, 3, "range", rule=r, seed=0).batch(64) + 1) / 2
        return float(((unit.mean(axis=1) < 0.75).mean(axis=(1, 2)) >= 0.05).mean())

    assert share_with_a_cell(rule) > 0.9 and share_with_a_cell(None) < 0.5
    white, cell = np.full((3, 4, 4), 0.9), np.full((3, 4, 4), 0.9)
    cell[:, :2, :2] = 0.3
    assert not rule.keeps(white) and rule.keeps(cell)
    assert CropRule(0.75, 0.05).keeps(white) and CropRule(0.75, 0.05).keeps(cell[0])


def test_crop_rule_reads_cards_old_and_new():
    old = {"level": 0.25, "min_fraction": 0.05, "any_share": 0.1, "tries": 50}
    assert CropRule.from_card(old) == CropRule(0.25, 0.05, 0.1, 50, dark=False)
    assert CropRule.from_card({**old, "dark": True, "later": 1}).dark


def test_crop_sampler_skips_small_images_and_refuses_when_none_fit(folder):
    with pytest.raises(ValueError, match="at least 64x64"):
        CropSampler(list_images(folder), 64, 1)


def test_diffaugment_keeps_shape_and_is_differentiable():
    x = torch.randn(4, 1, 16, 16, requires_grad=True)
    y = diff_augment(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    ones = torch.ones(8, 1, 16, 16)
    assert (cutout(ones) == 0).any() and (cutout(ones) == 1).any()
    shifted = translation(torch.arange(256.0).view(1, 1, 16, 16).repeat(8, 1, 1, 1))
    assert set(shifted.unique().tolist()) <= set(range(256))


def test_discriminator_scores_each_image():
    cfg = TrainConfig(images="", out="", **TINY).model_config()
    scores = Discriminator(cfg)(torch.randn(6, 1, 16, 16))
    assert scores.shape == (6, 1)


def test_train_checkpoints_resumes_and_exports(folder, tmp_path):
    out = tmp_path / "run" / "g.safetensors"
    cfg = TrainConfig(
        images=str(folder),
        out=str(out),
        name="blobs",
        batch=4,
        steps=2,
        checkpoint_every=2,
        holdout=0.0,
        **TINY,
    )
    seen = []
    train(cfg, seen.append)
    assert [e.step for e in seen] == [1, 2]
    ckpt = out.with_name("g.ckpt.pt")
    assert ckpt.exists() and (out.parent / "g.samples" / "step-0000002.png").exists()
    first = torch.load(ckpt, weights_only=True)
    assert first["step"] == 2

    cfg.steps = 4
    seen.clear()
    train(cfg, seen.append)
    assert [e.step for e in seen] == [3, 4]  # resumed, not restarted
    second = torch.load(ckpt, weights_only=True)
    assert second["step"] == 4
    assert any(not torch.equal(first["g"][k], second["g"][k]) for k in first["g"])

    card = read_card(out)
    assert card["name"] == "blobs" and card["architecture"] == "stylegan2"
    assert card["normalization"] == "percentile"
    made = card["extra"]["training"]
    assert made["steps"] == 4 and made["data"]["crop_rule"]["min_fraction"] == 0.05
    assert json.loads(out.with_suffix(".json").read_text()) == card
    g = load_native(out)
    img = g.synthesize(g.sample_latents(2, torch.Generator().manual_seed(0)))
    assert img.shape == (2, 1, 16, 16) and img.abs().max() <= 1


def test_resume_refuses_another_model_configuration(folder, tmp_path):
    out = tmp_path / "g.safetensors"
    cfg = TrainConfig(
        images=str(folder),
        out=str(out),
        batch=2,
        steps=1,
        checkpoint_every=1,
        holdout=0.0,
        **TINY,
    )
    train(cfg)
    cfg.widths = {4: 8, 8: 8, 16: 8}
    cfg.steps = 2
    with pytest.raises(ValueError, match="another model configuration"):
        train(cfg)


def test_cli_train(folder, tmp_path, capsys):
    out = tmp_path / "cli.safetensors"
    code = main(
        [
            "train",
            str(folder),
            "--out",
            str(out),
            "--resolution",
            "16",
            "--style-dim",
            "16",
            "--n-mlp",
            "2",
            "--widths",
            "4:16,8:16,16:8",
            "--batch",
            "2",
            "--steps",
            "1",
            "--checkpoint-every",
            "1",
            "--holdout",
            "0",
            "--crop-dark",
            "--quiet",
        ]
    )
    assert code == 0 and out.exists()
    printed = capsys.readouterr().out
    assert "step 1/1" in printed
    # The foreign-image flag is fitted beside the new generator (x2 only: x4 would leave
    # 4-pixel tiles), where upscale finds it.
    from napari_pulse import domain
    from napari_pulse.generators import load

    assert "the foreign-image flag at x2" in printed
    assert (tmp_path / "cli.domain-x2-bicubic.safetensors").exists()
    assert domain.find(load(str(out)), (1, 8, 8), 2, "bicubic") is not None
    card = read_card(out)["extra"]["training"]
    assert card["settings"]["crop_dark"] and card["data"]["crop_rule"]["dark"]
    assert main(["train", str(folder), "--out", str(tmp_path / "x.pt")]) == 2
    assert main(["train", str(folder), "--out", str(out), "--widths", "4-16"]) == 2
