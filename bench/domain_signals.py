"""Candidate signals for flagging foreign images, per tile, on held-out nuclei and on other
kinds of image (issue: foreign images flagged by default). Nothing here changes the search.

Inputs, each a 32x32 uint8 low-res field (9 tiles) from bicubic x4 of a 128x128 region:
the centre of each of the first ``--n`` held-out nuclei images (``harness.heldout_nuclei``),
of the sample images scikit-image's wheel ships (:data:`FOREIGN`, RGB made gray), and of
the first ``../shared/data/histology`` tile in grayscale. Each field is upscaled with ``nuclei``
and every default, through the pipeline's own stages, so that the chosen solution of each
tile can be read. Per tile:

- ``passes``: generator passes the tile cost (tiles the encoder's guess leaves above eps
  climb to the full search and cost far more);
- ``noise_ac``: the mean lag-1 autocorrelation (along X and Y) of the chosen noise maps (the
  prior's noise is white: 0);
- ``wplus_cos``: the mean cosine between consecutive W+ layers of the chosen latent.

Prints each signal's median and 5th/95th percentiles per kind; for the threshold that
flags at most 5% of the held-out tiles, the share of each foreign kind's tiles flagged; and
per field (the median over its 9 tiles) the held-out range against each foreign field, and
a two-signal rule fitted on half of the held-out fields and judged on the other half and
on the foreign fields (:func:`split_rule`).

    python bench/domain_signals.py --threads 2 [--n 10]
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from harness import DATA, begin, center_crop, heldout_nuclei, parser, report
from napari_pulse import pipeline
from napari_pulse.api import check_image
from napari_pulse.degrade import downscale
from napari_pulse.options import Options

#: scikit-image's sample images that its wheel ships (grayscale, or RGB made gray).
FOREIGN = (
    "camera",
    "coins",
    "moon",
    "cell",
    "astronaut",
    "brick",
    "grass",
    "gravel",
    "text",
    "page",
    "clock",
    "chelsea",
    "coffee",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "rocket",
)


def low(region: np.ndarray) -> np.ndarray:
    """A 128x128 region in [0, 1] (percentile-normalised) as a 32x32 uint8 field."""
    a = region.astype(np.float64)
    lo, hi = np.percentile(a, (1, 99.8))
    a = np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1).astype(np.float32)
    return np.clip(np.rint(downscale(a, 4) * 255), 0, 255).astype(np.uint8)


def foreign_images() -> dict[str, np.ndarray]:
    """The :data:`FOREIGN` images the installed scikit-image ships, in grayscale."""
    from skimage import data

    out = {}
    for name in FOREIGN:
        try:
            image = getattr(data, name)()
        except Exception:  # noqa: BLE001 - an image the wheel does not ship (a download)
            continue
        if image.ndim == 3:
            image = (image[..., :3] @ np.array([0.299, 0.587, 0.114])).astype(np.float64)
        out[name] = image
    return out


def kinds(n: int) -> dict[str, list[np.ndarray]]:
    def gray(path):
        return np.asarray(Image.open(path).convert("L"))

    out = {"nuclei (held out)": [low(center_crop(gray(p), 128)) for p in heldout_nuclei()[:n]]}
    for name, image in foreign_images().items():
        out[name] = [low(center_crop(image, 128))]
    histology = sorted((DATA / "histology").glob("*.png"))
    if histology:
        out["histology (gray)"] = [low(center_crop(gray(histology[0]), 128))]
    return out


def lag1(x: torch.Tensor) -> torch.Tensor:
    """Mean lag-1 autocorrelation along the last two axes, per leading index."""
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    var = x.pow(2).mean(dim=(-2, -1)).clamp(min=1e-12)
    ax = (x[..., :, 1:] * x[..., :, :-1]).mean(dim=(-2, -1)) / var
    ay = (x[..., 1:, :] * x[..., :-1, :]).mean(dim=(-2, -1)) / var
    return (ax + ay) / 2


def signals(field: np.ndarray) -> dict[str, np.ndarray]:
    """The per-tile signals of one field's upscale with the defaults."""
    opts = Options(generator="nuclei", factor=4)
    arr, rgb = check_image(field, None)
    setup = opts.resolve(rgb)
    _, job = pipeline.prepare(arr, rgb, setup)
    work = pipeline.run(job, pipeline.build(setup, job))
    while True:
        try:
            next(work)
        except StopIteration as done:
            state = done.value
            break
    chosen = state.chosen
    noise = [lag1(n[:, 0].flatten(1, -3)).mean(dim=1) for n in chosen.noise if n.shape[-1] > 2]
    z = chosen.z[:, 0]
    cos = torch.nn.functional.cosine_similarity(z[:, 1:], z[:, :-1], dim=-1).mean(dim=1)
    return {
        "passes": state.passes.numpy().astype(float),
        "noise_ac": torch.stack(noise).mean(dim=0).numpy(),
        "wplus_cos": cos.numpy(),
    }


def main() -> None:
    p = parser(__doc__, n=10)
    args = p.parse_args()
    begin(args)
    found: dict[str, dict[str, np.ndarray]] = {}
    fields_of: dict[str, dict[str, np.ndarray]] = {}  # per field: the median over its tiles
    for kind, fields in kinds(args.n).items():
        per = [signals(f) for f in fields]
        found[kind] = {k: np.concatenate([s[k] for s in per]) for k in per[0]}
        fields_of[kind] = {k: np.array([np.median(s[k]) for s in per]) for k in per[0]}
        figures = {f"{k} median": float(np.median(v)) for k, v in found[kind].items()} | {
            f"{k} p5-p95": f"{np.percentile(v, 5):.3g}..{np.percentile(v, 95):.3g}"
            for k, v in found[kind].items()
        }
        report(f"{kind} ({len(next(iter(found[kind].values())))} tiles)", **figures)
    home = found.pop("nuclei (held out)")
    for signal, high_is_foreign in (("passes", True), ("noise_ac", True), ("wplus_cos", False)):
        v = home[signal]
        cut = np.percentile(v, 95) if high_is_foreign else np.percentile(v, 5)
        flagged = {
            kind: float(np.mean(s[signal] > cut if high_is_foreign else s[signal] < cut))
            for kind, s in found.items()
        }
        report(f"{signal}: flag {'above' if high_is_foreign else 'below'} {cut:.4g}", **flagged)
    home_fields = fields_of.pop("nuclei (held out)")
    for signal in ("noise_ac", "wplus_cos"):
        values = {kind: float(f[signal][0]) for kind, f in fields_of.items()}
        v = home_fields[signal]
        report(
            f"{signal}, per field (median over its tiles)",
            held_out_min=float(v.min()),
            held_out_max=float(v.max()),
            **values,
        )
    split_rule(home_fields, fields_of)


def split_rule(home: dict[str, np.ndarray], foreign: dict[str, dict[str, np.ndarray]]) -> None:
    """A per-field rule fitted on the first half of the held-out fields (flag noise_ac above
    their max, or wplus_cos below their min) and judged out of sample: the second half's
    share flagged, and each foreign field's verdict."""
    half = len(home["noise_ac"]) // 2
    if half < 2:
        return
    top, bottom = home["noise_ac"][:half].max(), home["wplus_cos"][:half].min()

    def flag(noise, cos):
        return (noise > top) | (cos < bottom)

    rest = flag(home["noise_ac"][half:], home["wplus_cos"][half:])
    verdicts = {k: bool(flag(f["noise_ac"][0], f["wplus_cos"][0])) for k, f in foreign.items()}
    report(
        f"rule from {half} held-out fields: noise_ac > {top:.4g} or wplus_cos < {bottom:.4g}",
        held_out_flagged=f"{int(rest.sum())}/{len(rest)}",
        foreign_flagged=f"{sum(verdicts.values())}/{len(verdicts)}",
        missed=", ".join(k for k, v in verdicts.items() if not v) or "none",
    )


if __name__ == "__main__":
    main()
