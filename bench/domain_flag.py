"""The foreign-image flag with the defaults: how many held-out nuclei fields and how many
fields of other kinds it flags (``nuclei`` at x4, bicubic; :mod:`napari_pulse.domain`).

Fields are 32x32 uint8 low-res fields (9 tiles), each the x4 bicubic downscale of a
128x128 region, percentile-normalised (``domain_signals.low``), as the model's
calibration fields are (``scripts/fit_domain.py``):

- held-out nuclei: the centre of every held-out file (``harness.heldout_nuclei``), and
  its four corners;
- other kinds: scikit-image's shipped sample images (``domain_signals.foreign_images``, RGB
  made gray; the centre and, for images of 256 px or more, the four corners) and the centres of
  the first ``--histology`` tiles of ``../shared/data/histology`` in grayscale;
- and, whole, the bundled sample field and the 256x256 field of ``field.py``.

Each field is prepared as ``upscale`` prepares it and scored by the model ``upscale``
finds; no search runs (the flag does not depend on it). Prints the share flagged per
kind, the totals against the targets (held-out at most 5%, foreign at least 90%), and the
score of the whole fields::

    python bench/domain_flag.py [--histology 10]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from domain_signals import foreign_images, low
from field import field
from harness import DATA, begin, center_crop, heldout_nuclei, parser, report
from napari_pulse import domain, pipeline
from napari_pulse.api import check_image
from napari_pulse.options import Options

SAMPLE = Path(__file__).resolve().parents[1] / "src/napari_pulse/data/nuclei_lr.png"


def regions(a: np.ndarray) -> list[np.ndarray]:
    """The centre 128x128 region, and the four corners when both sides are >= 256."""
    out = [center_crop(a, 128)]
    if min(a.shape[:2]) >= 256:
        out += [a[:128, :128], a[:128, -128:], a[-128:, :128], a[-128:, -128:]]
    return out


def gray(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def foreign(histology: int) -> dict[str, list[np.ndarray]]:
    out = {name: [low(r) for r in regions(image)] for name, image in foreign_images().items()}
    tiles = sorted((DATA / "histology").glob("*.png"))[:histology]
    if tiles:
        out["histology (gray)"] = [low(center_crop(gray(p), 128)) for p in tiles]
    return out


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--histology", type=int, default=10)
    args = p.parse_args()
    begin(args)
    setup = Options(generator="nuclei", factor=4).resolve(False)
    d = setup.degrade

    def score(f: np.ndarray) -> float:
        arr, rgb = check_image(f, None)
        _, job = pipeline.prepare(arr, rgb, setup)
        model = domain.find(setup.generator, tuple(job.lr_tiles.shape[1:]), 4, d.kind, d.sigma)
        if model is None:
            raise SystemExit("no domain model for nuclei x4: run scripts/fit_domain.py")
        return model.score(job.lr_tiles)

    files = heldout_nuclei()
    home = {
        "held-out nuclei, centres": [low(center_crop(gray(f), 128)) for f in files],
        "held-out nuclei, corners": [low(r) for f in files for r in regions(gray(f))[1:]],
    }
    totals = {}
    for group, kinds in (("in domain", home), ("foreign", foreign(args.histology))):
        flags = []
        for kind, fields in kinds.items():
            s = np.array([score(f) for f in fields])
            flags.append(s > 1)
            report(kind, fields=len(s), flagged=f"{(s > 1).mean():.0%}", median_score=np.median(s))
        totals[group] = np.concatenate(flags)
    report(
        "totals",
        in_domain_flagged=f"{totals['in domain'].mean():.1%} of {len(totals['in domain'])}",
        target_in_domain="<= 5%",
        foreign_flagged=f"{totals['foreign'].mean():.1%} of {len(totals['foreign'])}",
        target_foreign=">= 90%",
    )
    report("bundled sample (64x64)", score=score(gray(SAMPLE)))
    report("field.py 256x256 field", score=score(field(256)[1]))


if __name__ == "__main__":
    main()
