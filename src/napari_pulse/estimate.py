"""What a large upscale will take, said before it starts: memory and time.

:func:`estimate` sizes a job from its tiles, the generator's latent and noise shapes and the
pipeline built for it; the time comes from a short timing of the generator's forward and
backward pass at the job's batch width, on its device. :func:`pipeline.stream
<napari_pulse.pipeline.stream>` announces it (a log line, and the note of the stream's
first event, which the command line prints and the widget shows) when a job is large.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .candidates import kept
from .refine import RefineSearch

if TYPE_CHECKING:
    from .job import Job, Stage

#: A job is announced from this many tiles (over all planes), or this much memory.
LARGE_UNITS = 1024
LARGE_BYTES = 2 * 2**30
#: Typical generator passes per tile and sample with an encoder rung: its refinement and
#: the tiles it leaves above eps (median 103 on a 256x256 nuclei field), plus the seam
#: refinement (``bench/field.py``).
ENCODER_PASSES = 100
#: Bytes a forward and backward pass holds per generator pixel and image of the batch:
#: 2.3 KB for the nuclei StyleGAN2 (580 MB at its CPU width of 64, measured by RSS).
ACTIVATION_BYTES = 2300


@dataclass(frozen=True)
class Estimate:
    """A job's size: units (tiles x planes), typical generator passes in all, the pass rate
    measured on its device, and the memory it needs at its peak."""

    units: int
    passes: int
    passes_per_second: float
    bytes: int

    @property
    def seconds(self) -> float:
        return self.passes / max(self.passes_per_second, 1e-9)

    @property
    def large(self) -> bool:
        return self.units >= LARGE_UNITS or self.bytes >= LARGE_BYTES

    def describe(self) -> str:
        tiles = f"{self.units} tile{'s' * (self.units != 1)}"
        return (
            f"large job: {tiles}; about {self.bytes / 2**30:.1f} GiB of memory "
            f"and about {_duration(self.seconds)} at {self.passes_per_second:.0f} generator "
            "passes a second (tiles that settle early take less)"
        )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    return f"{minutes // 60:.0f} h {minutes % 60:.0f} min"


def start_bytes(job: Job) -> int:
    """Bytes of one start: its latent and its noise inputs, float32."""
    g = job.render.g
    return 4 * (math.prod(g.latent_shape) + sum(math.prod(s) for s in g.noise_shapes()))


def memory(job: Job, stages: list[Stage], units_at_once: int | None = None) -> int:
    """Peak bytes of the job, by the tensors it holds: per unit its tile, live image,
    candidates (twice, while merging) and samples; one chunk of starts with their
    optimiser state; one batch's activations; the mosaics, and the result in float64
    while it is cast, and its expected-error map. A job run in blocks holds the per-unit
    part for ``units_at_once`` units (and a few numbers for every unit)."""
    cfg, render = job.cfg, job.render
    image = 4 * render.channels * math.prod(render.crop)
    one = start_bytes(job) + image
    rungs = [s.k for s in stages if isinstance(s, RefineSearch)]
    k = kept(cfg.samples, max(cfg.n_keep, *rungs, cfg.samples))
    per_unit = image + 2 * k * one + cfg.samples * one + 4 * job.lr_tiles[0].numel()
    chunk = min(cfg.chunk_units(), job.n_units) * cfg.restarts * (4 * start_bytes(job))
    batch = cfg.batch_size * ACTIVATION_BYTES * math.prod(job.render.g.resolution)
    pixels = job.n_planes * job.lr_tiles.shape[1] * math.prod(job.planes.shape[-2:])
    # the samples cast (float32, float64); then the expected-error map (float64 twice,
    # float32; napari_pulse.error_map), where the generator has one
    out = pixels * job.grid.factor**2 * (job.samples * (4 * 3 + 8 * 2) + 8 * 2 + 4)
    held = job.n_units if units_at_once is None else min(job.n_units, 2 * units_at_once)
    every = job.n_units * (4 * job.lr_tiles[0].numel() + 64)  # tiles, scores and passes
    return int(held * per_unit + every + chunk + batch + out)


def passes(job: Job, stages: list[Stage]) -> int:
    """Typical generator passes of the whole job."""
    cfg = job.cfg
    if any(getattr(s, "name", "") == "encoder" for s in stages):
        per_unit = ENCODER_PASSES
    else:
        explore = cfg.n_explore_steps
        per_unit = cfg.restarts * explore + cfg.n_keep * (cfg.steps - explore)
    return job.n_units * (per_unit + cfg.samples * cfg.blend_steps_for(len(job.grid)))


def pass_rate(job: Job, repeats: int = 3) -> float:
    """Generator passes (forward and backward, one image each) a second at the job's batch
    width, on its device: the best of ``repeats`` timed passes after one warm-up pass."""
    g, width = job.render.g, max(1, min(job.cfg.batch_size, job.n_units * job.cfg.restarts))
    rng = torch.Generator().manual_seed(0)
    z = g.sample_latents(width, rng).to(job.device).requires_grad_()
    noise = [torch.randn((width, *s), generator=rng).to(job.device) for s in g.noise_shapes()]
    took = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        job.render(z, noise or None).sum().backward()
        if job.device.type == "cuda":
            torch.cuda.synchronize(job.device)
        took.append(time.perf_counter() - start)
    return width / max(min(took[1:]), 1e-9)


def estimate(
    job: Job, stages: list[Stage], rate: float | None = None, units_at_once: int | None = None
) -> Estimate:
    """The job's size; the pass rate is timed (:func:`pass_rate`) unless given."""
    size = memory(job, stages, units_at_once)
    units = job.n_units
    if rate is None:
        rate = pass_rate(job) if units >= LARGE_UNITS or size >= LARGE_BYTES else math.inf
    return Estimate(units, passes(job, stages), rate, size)
