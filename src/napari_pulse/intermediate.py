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

from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from .events import Progress, relay, ticks_as_progress
from .optim import Below, cosine, optimise

if TYPE_CHECKING:
    from .job import Job, State

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


class FeatureSearch:
    """Stage: feature offsets for every chosen sample, one layer at a time, from its latent
    (see the module docstring); sets the samples' offsets, images and out-of-domain score."""

    name = "features"

    def __init__(self, icfg: IntermediateConfig, layers: tuple[int, ...]) -> None:
        self.icfg, self.layers = icfg, layers

    def plan(self, job: Job) -> int:
        rows = job.n_units * job.samples
        return len(self.layers) * len(job.cfg.batches(rows, 1)) * self.icfg.steps

    def run(self, job: Job, state: State) -> Generator[Progress, None, State]:
        c, icfg = state.chosen, self.icfg
        g, n_units, n = job.render.g, job.n_units, job.samples
        row_units = torch.arange(n_units, device=job.device).repeat_interleave(n)
        targets = job.lr_tiles[row_units]
        z, noise = c.z.flatten(0, 1), [x.flatten(0, 1) for x in c.noise]
        shapes, scales = g.feature_shapes(), g.feature_scales()
        rows, batches, plan = z.shape[0], job.cfg.batches(z.shape[0], 1), self.plan(job)
        offsets: dict[int, torch.Tensor] = {}
        score = torch.zeros(rows, device=z.device)
        images = torch.empty((rows, job.render.channels, *job.render.crop), device=z.device)
        for li, layer in enumerate(self.layers):
            found = torch.zeros((rows, *shapes[layer]), device=z.device)
            last = li == len(self.layers) - 1
            for b, idx in enumerate(batches):
                sel = torch.tensor(idx, device=z.device)
                fixed = {k: o[sel] for k, o in offsets.items()}
                lows = (targets[sel], row_units[sel])
                fit = self._fit(job, lows, z[sel], [x[sel] for x in noise], fixed, layer)
                i, n_fits = li * len(batches) + b, len(self.layers) * len(batches)
                events = ticks_as_progress(self.name, i * icfg.steps, plan, i + 1, n_fits)
                best = yield from relay(fit, events)
                found[sel] = best.values[0]
                if last:
                    images[sel] = best.images
            offsets[layer] = found
            score += relative_size(found, scales[layer], icfg.norm) / icfg.radius / len(self.layers)
        chosen = replace(
            c,
            offsets={k: o.view(n_units, n, *o.shape[1:]) for k, o in offsets.items()},
            ood=score.view(n_units, n),
            images=images.view(n_units, n, *images.shape[1:]),
        )
        return replace(state, chosen=chosen)

    def _fit(self, job: Job, targets, z, noise, fixed, layer: int):
        """The optimiser loop on one layer's offsets for rows ``z`` (the others fixed);
        ``targets``: the rows' low-res tiles and units."""
        icfg, render = self.icfg, job.render
        shape, scale = render.g.feature_shapes()[layer], render.g.feature_scales()[layer]
        delta = torch.zeros((z.shape[0], *shape), device=z.device, requires_grad=True)

        def objective():
            img = render(z, noise or None, {**fixed, layer: delta})
            mse = job.lr_mse(img, *targets)
            loss = job.cfg.l2_weight * mse
            if icfg.realism:
                loss = loss + icfg.realism * (delta.flatten(1) / scale).pow(2).mean(1)
            return loss, mse, img

        images = torch.empty((z.shape[0], render.channels, *render.crop), device=z.device)
        return optimise(
            [delta],
            objective,
            icfg.steps,
            lambda s: icfg.lr * scale * cosine(s, icfg.steps),
            lambda: project_ball(delta, icfg.radius * scale, icfg.norm),
            track=[delta],
            images=images,
            settle=Below(icfg.settle * job.cfg.eps),
        )


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
