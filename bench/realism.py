"""Realism of a trained generator: a two-sample test and a sample grid beside real crops.

A small CNN learns to tell real crops of held-out images (drawn exactly as training drew
its crops, with the rule recorded in the model card) from generated images; its accuracy on
a test half is the figure (50% means the two cannot be told apart; 100% means every image
gives itself away). Beside it, the nuclear morphology of both sets
(:mod:`morphology`: one Otsu threshold from the real crops, connected components; area,
eccentricity, solidity, mean and max intensity, texture, objects per crop), one line per
feature with its Kolmogorov-Smirnov and Wasserstein distances, and (``--histograms``) the
distributions side by side in a PNG. Run::

    python bench/realism.py train-runs/nuclei.safetensors ../shared/data/nuclei \
        --grid docs/nuclei_samples.png --histograms docs/nuclei_morphology.png
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import morphology
from harness import begin, parser, report, timed
from napari_pulse.generators.native import load_native_net
from napari_pulse.training.data import CropRule, CropSampler, list_images
from napari_pulse.training.loop import save_grid


def real_crops(card: dict, images: Path, n: int, seed: int) -> torch.Tensor:
    """Crops of the held-out images, drawn as the training run drew its crops."""
    made = card["extra"]["training"]
    s = made["settings"]
    rule = made["data"]["crop_rule"]
    files = list_images(images, s["holdout"], "holdout")
    sampler = CropSampler(
        files,
        s["resolution"],
        s["channels"],
        s["normalization"],
        CropRule.from_card({"any_share": 0.0, **rule}),
        seed=seed,
    )
    return torch.from_numpy(sampler.batch(n)), len(files)


def fake_images(net, n: int, seed: int, batch: int = 256) -> torch.Tensor:
    torch.manual_seed(seed)
    out = []
    with torch.no_grad():
        for i in range(0, n, batch):
            z = torch.randn(min(batch, n - i), net.config.style_dim)
            out.append(net(z, randomize_noise=True).clamp(-1, 1))
    return torch.cat(out)


def critic(channels: int) -> nn.Module:
    def block(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, 2, 1), nn.BatchNorm2d(o), nn.LeakyReLU(0.2)]

    return nn.Sequential(
        *block(channels, 16), *block(16, 32), *block(32, 64), *block(64, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 1),
    )  # fmt: skip


def two_sample_accuracy(real: torch.Tensor, fake: torch.Tensor, epochs: int, seed: int) -> float:
    """Train a critic on half of each set; its accuracy on the other halves."""
    torch.manual_seed(seed)
    n = min(len(real), len(fake))
    half = n // 2
    x_tr = torch.cat([real[:half], fake[:half]])
    y_tr = torch.cat([torch.ones(half), torch.zeros(half)])
    x_te = torch.cat([real[half:n], fake[half:n]])
    y_te = torch.cat([torch.ones(n - half), torch.zeros(n - half)])
    model = critic(real.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        order = torch.randperm(len(x_tr))
        model.train()
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            loss = F.binary_cross_entropy_with_logits(model(x_tr[idx]).squeeze(1), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x_te[i : i + 256]).squeeze(1) for i in range(0, len(x_te), 256)])
    return float(((pred > 0).float() == y_te).float().mean())


def main() -> None:
    p = parser(__doc__, n=2000)
    p.add_argument("weights", type=Path, help="a native .safetensors generator from `train`")
    p.add_argument("images", type=Path, help="the folder the generator was trained from")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid", type=Path, help="write real (left) beside generated (right) here")
    p.add_argument("--histograms", type=Path, help="write the morphology histograms here")
    args = p.parse_args()
    begin(args)
    from napari_pulse.generators.native import read_card

    card = read_card(args.weights)
    net, _, _ = load_native_net(args.weights)

    def measure():
        real, n_files = real_crops(card, args.images, args.n, args.seed)
        fake = fake_images(net, args.n, args.seed)
        return real, fake, n_files, two_sample_accuracy(real, fake, args.epochs, args.seed)

    seconds, (real, fake, n_files, acc) = timed(measure)
    se = math.sqrt(0.25 / (2 * (args.n - args.n // 2)))
    print(f"generator: {args.weights} (trained {card['extra']['training']['steps']} steps)")
    print(f"real crops: {args.n} from {n_files} held-out images; generated: {args.n}")
    report(
        "two-sample critic accuracy",
        accuracy=f"{acc:.3f} (chance 0.5, +-{1.96 * se:.3f} at 95%)",
    )
    report("mean intensity", real=f"{real.mean():.3f}", generated=f"{fake.mean():.3f}")
    report("std intensity", real=f"{real.std():.3f}", generated=f"{fake.std():.3f}")
    report("time", seconds=seconds)
    shape(real, fake, args.histograms)
    if args.grid:
        rows, cols = 6, 6
        tiles = []
        for r in range(rows):
            tiles += [real[r * cols + c] for c in range(cols)]
            tiles += [fake[r * cols + c] for c in range(cols)]
        save_grid(torch.stack(tiles), args.grid, cols=2 * cols)
        print(f"grid: {args.grid} (left 6 columns real held-out crops, right 6 generated)")


def shape(real: torch.Tensor, fake: torch.Tensor, histograms: Path | None) -> None:
    """The morphology lines (first channel, images in [0, 1])."""
    r = ((real[:, 0] + 1) / 2).clamp(0, 1).numpy()
    f = ((fake[:, 0] + 1) / 2).clamp(0, 1).numpy()
    level = morphology.threshold(r)
    a, b = morphology.objects(r, level), morphology.objects(f, level)
    print(
        f"morphology: Otsu threshold {level:.3f} (from the real crops), components >= "
        f"{morphology.MIN_AREA} px; {len(a['area'])} real objects, {len(b['area'])} generated"
    )
    for d in morphology.compare(a, b):
        report(
            f"  {d.feature}",
            ks=f"{d.ks:.3f}",
            wasserstein_in_real_sd=f"{d.wasserstein:.3f}",
            median_real=f"{d.real_median:.4g}",
            median_generated=f"{d.generated_median:.4g}",
        )
    if histograms:
        morphology.histograms(a, b, histograms)
        print(f"histograms: {histograms} (real grey, generated orange)")


if __name__ == "__main__":
    main()
