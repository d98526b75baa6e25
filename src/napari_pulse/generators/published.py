"""Published checkpoints: downloaded once (with a progress bar) into the cache, hash-checked.

:data:`PUBLISHED` maps a name to a URL, its sha256, the reader for its format and the facts
for its model card. :func:`fetch` downloads with pooch into ``<cache>/checkpoints``; a file
whose sha256 differs from the expected one is refused and nothing is kept. Nothing here runs
unless a published generator is loaded; tests serve files from 127.0.0.1 only.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from .base import DomainGenerator
from .cache import cache_dir


@dataclass(frozen=True)
class PublishedCheckpoint:
    """A downloadable generator: where it is, its hash, how to read it, what it is."""

    name: str
    url: str
    sha256: str
    #: "native", "rosinality", "nvlabs" or "dcgan".
    reader: str
    summary: str
    #: ModelCard fields to set on the loaded generator (domain, license, training_data, ...).
    card: dict = field(default_factory=dict)


#: Entries go here only with a sha256 checked against the real file; none is vouched for yet.
PUBLISHED: dict[str, PublishedCheckpoint] = {}


def checkpoint_dir() -> Path:
    """Where downloaded checkpoints are kept."""
    return cache_dir() / "checkpoints"


def fetch(url: str, sha256: str, fname: str | None = None, progress: bool = True) -> Path:
    """The local copy of ``url`` in the cache, downloaded if absent; its sha256 must match.

    A mismatching download is deleted and raises ValueError; nothing is left in the cache.
    """
    import pooch

    sha256 = sha256.lower().removeprefix("sha256:")
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    folder = checkpoint_dir()
    created = [p for p in (folder.parent, folder) if not p.exists()]
    name = fname or f"{sha256[:12]}-{os.path.basename(urlparse(url).path) or 'checkpoint'}"
    try:
        path = pooch.retrieve(
            url, known_hash=f"sha256:{sha256}", fname=name, path=folder, progressbar=progress
        )
    except ValueError as exc:
        _remove_empty(reversed(created))
        if "hash" not in str(exc).lower():
            raise
        raise ValueError(
            f"refused the download of {url}: its sha256 does not match the expected {sha256}; "
            f"nothing was kept. ({exc})"
        ) from None
    except Exception:
        _remove_empty(reversed(created))
        raise
    return Path(path)


def _remove_empty(folders: Iterable[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass


def _readers() -> dict[str, Callable[..., DomainGenerator]]:
    from . import dcgan, native, nvlabs, rosinality

    return {
        "native": native.load_native,
        "rosinality": rosinality.load_rosinality,
        "nvlabs": nvlabs.load_nvlabs,
        "dcgan": dcgan.load_dcgan_file,
    }


def load_published(name: str, progress: bool = True) -> DomainGenerator:
    """Download (once) and load the published checkpoint ``name``."""
    if name not in PUBLISHED:
        raise ValueError(f"no published checkpoint {name!r}; known: {', '.join(PUBLISHED)}")
    entry = PUBLISHED[name]
    path = fetch(entry.url, entry.sha256, progress=progress)
    model = _readers()[entry.reader](path)
    model.card = dataclasses.replace(model.card, name=entry.name, **entry.card)
    return model.eval().requires_grad_(False)
