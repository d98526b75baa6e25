"""Intermediate-layer search (ILO, Daras et al. 2021): after the latent, the feature maps.

A latent search is limited to what the generator can draw; real images, and microscopy from
another instrument, often lie just outside that range. This phase continues from the chosen
latents: it adds an offset to one feature map of the generator at a time (early layers
first), optimised on the same low-res loss, and kept inside a ball around the features the
latent produced. The ball's radius is relative to the layer's typical size (the root mean
square of its activations over prior draws), so that ``radius=0.3`` means "features may move
by 30% of their usual magnitude". The used share of that distance is the out-of-domain
score: 0 for an image the latent alone explains, 1 for one that needed all of the freedom
it was given.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass

import torch

from .degrade import Degradation
from .events import Progress
from .search import Renderer, SearchConfig, cosine

MODES = ("latent", "intermediate")
NORMS = ("l2", "l1")


@dataclass(frozen=True)
class IntermediateConfig:
    """Settings of the feature-map phase."""

    #: Feature maps to search, in order (indices into ``generator.feature_shapes()``);
    #: None: the default for the generator (:func:`default_layers`).
    layers: tuple[int, ...] | None = None
    radius: float = 0.3  # per layer, relative to its activations' root mean square
    norm: str = "l2"  # "l2": root-mean-square ball; "l1": mean-absolute ball
    steps: int = 100  # per layer
    lr: float = 0.1  # relative to the layer's scale
    #: Realism: weight of the offsets' squared relative size in the loss (0: only the ball).
    realism: float = 0.0
    #: A row stops moving once its low-res MSE is below ``settle * eps``: any image within
    #: eps explains the input, so the offsets stay as small as the fit allows.
    settle: float = 0.25

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if not self.radius > 0:
            raise ValueError(f"radius must be > 0, got {self.radius}")
        if self.steps < 1:
            raise ValueError(f"intermediate steps must be >= 1, got {self.steps}")
        if self.realism < 0:
            raise ValueError(f"realism must be >= 0, got {self.realism}")


def default_layers(n_layers: int) -> tuple[int, ...]:
    """The second and third feature maps (coarse structure stays the latent's)."""
    if n_layers == 0:
        return ()
    return tuple(range(min(1, n_layers - 1), min(3, n_layers)))


def check_layers(layers: tuple[int, ...] | None, shapes: list[tuple[int, ...]], name: str):
    """The layers to search, checked against the generator's feature maps."""
    if not shapes:
        raise ValueError(
            f"generator {name!r} exposes no feature maps, so only mode='latent' works with it"
        )
    chosen = default_layers(len(shapes)) if layers is None else tuple(int(k) for k in layers)
    bad = [k for k in chosen if not 0 <= k < len(shapes)]
    if bad or not chosen:
        raise ValueError(
            f"layers must be indices in 0..{len(shapes) - 1} for generator {name!r}, got {layers}"
        )
    return chosen


def project_ball(delta: torch.Tensor, radius: torch.Tensor | float, norm: str) -> torch.Tensor:
    """Euclidean projection of every row of ``delta`` onto its ball, in place.

    ``l2``: root mean square <= radius. ``l1``: mean absolute value <= radius (the exact
    projection onto the l1 ball, Duchi et al. 2008).
    """
    flat = delta.flatten(1)
    n = flat.shape[1]
    with torch.no_grad():
        if norm == "l2":
            rms = flat.pow(2).mean(1, keepdim=True).sqrt()
            flat.mul_(torch.clamp(radius / rms.clamp_min(1e-12), max=1.0))
        else:
            budget = radius * n  # the l1 norm allowed
            a = flat.abs()
            over = a.sum(1) > budget
            if bool(over.any()):
                mu = a[over].sort(dim=1, descending=True).values
                css = mu.cumsum(1) - budget
                j = torch.arange(1, n + 1, device=flat.device, dtype=flat.dtype)
                rho = ((mu - css / j) > 0).sum(1, keepdim=True).clamp_min(1)
                theta = css.gather(1, rho - 1) / rho.to(flat.dtype)
                flat[over] = flat[over].sign() * (a[over] - theta).clamp_min(0)
    return delta


def relative_size(delta: torch.Tensor, scale: float, norm: str) -> torch.Tensor:
    """Per-row size of an offset relative to its layer's scale, in the ball's norm."""
    flat = delta.flatten(1) / scale
    return flat.pow(2).mean(1).sqrt() if norm == "l2" else flat.abs().mean(1)


def search_features(
    render: Renderer,
    degrade: Degradation,
    targets: torch.Tensor,
    z: torch.Tensor,
    noise: list[torch.Tensor],
    cfg: SearchConfig,
    icfg: IntermediateConfig,
    layers: tuple[int, ...],
    progress: dict,
) -> Generator[Progress, None, tuple[dict[int, torch.Tensor], torch.Tensor, torch.Tensor]]:
    """Fit feature offsets for rows ``z`` ``(R, ...)`` against ``targets`` ``(R, C, h, w)``.

    Returns the offsets per layer ``(R, *shape)``, every row's out-of-domain score (the
    share of the ball its offsets use, averaged over layers: 0 to 1) and its images.
    """
    g = render.g
    shapes, scales = g.feature_shapes(), g.feature_scales()
    rows = z.shape[0]
    offsets: dict[int, torch.Tensor] = {}
    batches = cfg.batches(rows, 1)
    score = torch.zeros(rows, device=z.device)
    images = torch.empty((rows, render.channels, *render.crop), device=z.device)
    for li, layer in enumerate(layers):
        found = torch.zeros((rows, *shapes[layer]), device=z.device)
        for b, idx in enumerate(batches):
            sel = torch.tensor(idx, device=z.device)
            fixed = {k: o[sel] for k, o in offsets.items()}
            zb, nb = z[sel], [n[sel] for n in noise]
            delta = torch.zeros((len(idx), *shapes[layer]), device=z.device, requires_grad=True)
            opt = torch.optim.Adam([delta], lr=icfg.lr * scales[layer])
            best = torch.full((len(idx),), math.inf, device=z.device)
            best_delta = delta.detach().clone()
            start = progress["done"]
            for step in range(icfg.steps + 1):
                final = step == icfg.steps
                with torch.set_grad_enabled(not final):
                    img = render(zb, nb or None, {**fixed, layer: delta})
                    diff = degrade(img) - targets[sel]
                    mse = diff.pow(2).flatten(1).mean(1)
                    loss = cfg.l2_weight * mse
                    if icfg.realism:
                        rel = delta.flatten(1) / scales[layer]
                        loss = loss + icfg.realism * rel.pow(2).mean(1)
                with torch.no_grad():
                    better = mse < best
                    best = torch.where(better, mse, best)
                    best_delta[better] = delta.detach()[better]
                    if li == len(layers) - 1:
                        images[sel[better]] = img.detach()[better]
                if final:
                    break
                for group in opt.param_groups:
                    group["lr"] = icfg.lr * scales[layer] * cosine(step, icfg.steps)
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
                project_ball(delta, icfg.radius * scales[layer], icfg.norm)
                with torch.no_grad():  # settled rows keep their best offsets
                    settled = best <= icfg.settle * cfg.eps
                    delta[settled] = best_delta[settled]
                if bool(settled.all()):
                    progress["done"] = start + icfg.steps
                    break
                progress["done"] = start + step + 1
                yield Progress(
                    "features",
                    progress["done"],
                    progress["total"],
                    li * len(batches) + b + 1,
                    len(layers) * len(batches),
                    float(best.max()),
                )
            found[sel] = best_delta
        offsets[layer] = found
        score += relative_size(found, scales[layer], icfg.norm) / icfg.radius / len(layers)
    return offsets, score, images


def planned_feature_steps(rows: int, n_layers: int, icfg: IntermediateConfig, batch: int) -> int:
    """Optimiser steps of :func:`search_features` (for progress bars)."""
    return n_layers * math.ceil(rows / batch) * icfg.steps


#: Share of the feature ball above which a result is flagged as out of the generator's domain.
OOD_WARNING = 0.9


def ood_warning(score: float) -> str | None:
    """A warning for users when the intermediate search used (nearly) all of its ball."""
    if score < OOD_WARNING:
        return None
    return (
        f"out-of-domain score {score:.2f}: the image lies outside what this generator draws; "
        "the search used nearly all the room it was given beyond the generator's own features, "
        "so the detail owes more to the fit than to the generator's prior"
    )
