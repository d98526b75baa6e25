"""Warm starts: the prior draws whose downscaled images already look most like each tile.

Instead of exploring from blind random latents, the search may start from a *bank*: ``n``
latents drawn from the prior with a fixed seed, rendered once and downscaled with the
search's own operator. Each tile's starts are the ``k`` bank entries closest to it (low-res
MSE). One bank serves every tile of a call, and is kept in memory and in the cache
directory (:class:`BankCache`) for later calls with the same generator and operator, so
its cost is shared, while each tile still starts from many different, prior-typical
latents.

Only the downscaled bank images are kept (``n x C x h x w``); the latents and noise of the
chosen entries are drawn again from the same seed, which is cheap.
"""

from __future__ import annotations

import hashlib
import math
import os
import weakref
from collections import OrderedDict
from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from .degrade import Degradation
from .events import Progress, relay
from .generators.cache import cache_dir
from .render import Renderer

if TYPE_CHECKING:
    from .job import Job, State

#: Bank entries drawn per chunk (the unit of the draws' seeding).
CHUNK = 256
#: Bank entries rendered per progress event (so that a cancel takes effect soon).
PIECE = 64


_fingerprints: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fingerprint(gen: torch.nn.Module) -> str:
    """sha256 of what a generator renders from: its class, shapes and every weight
    (hashed again only when a weight was changed or replaced since the last call)."""
    stamp = tuple((t.data_ptr(), t._version) for t in gen.state_dict().values())
    known = _fingerprints.get(gen)
    if known is None or known[0] != stamp:
        known = _fingerprints[gen] = (stamp, _fingerprint(gen))
    return known[1]


def _fingerprint(gen: torch.nn.Module) -> str:
    h = hashlib.sha256()
    meta = (
        type(gen).__qualname__,
        tuple(gen.resolution),
        gen.channels,
        tuple(gen.latent_shape),
        [tuple(s) for s in gen.noise_shapes()],
    )
    h.update(repr(meta).encode())
    for name, t in gen.state_dict().items():
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class BankKey:
    """What a bank's low-res images depend on."""

    generator: str  # :func:`fingerprint`
    channels: int
    crop: tuple[int, int]
    degradation: str
    factor: int
    sigma: float | None
    size: int
    seed: int

    def file_name(self) -> str:
        crop = f"{self.crop[0]}x{self.crop[1]}"
        sigma = "" if self.sigma is None else f"-s{self.sigma:g}"
        return (
            f"{self.generator[:32]}-c{self.channels}-{crop}-{self.degradation}{sigma}"
            f"-x{self.factor}-n{self.size}-seed{self.seed}.safetensors"
        )


def _draw(gen, start: int, count: int, seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Bank entries ``start .. start+count`` (a chunk-aligned range): latents and noise."""
    rng = torch.Generator().manual_seed(seed * 1_000_003 + start // CHUNK)
    z = gen.sample_latents(count, rng)
    noise = [torch.randn((count, *s), generator=rng) for s in gen.noise_shapes()]
    return z, noise


def latents(gen, size: int, seed: int) -> torch.Tensor:
    """The latents ``(size, ...)`` of every bank entry (as :func:`_draw` makes them, the
    noise left undrawn: it comes after the latents in each chunk's stream)."""
    parts = []
    for start in range(0, size, CHUNK):
        rng = torch.Generator().manual_seed(seed * 1_000_003 + start // CHUNK)
        parts.append(gen.sample_latents(CHUNK, rng)[: size - start])
    return torch.cat(parts)


def render_bank(
    render: Renderer, degrade: Degradation, size: int, seed: int, device: torch.device
) -> Generator[int, None, torch.Tensor]:
    """Downscaled images ``(size, C, h, w)`` of the bank; yields the pieces done so far."""
    gen = render.g
    parts = []
    with torch.no_grad():
        for start in range(0, size, CHUNK):
            count = min(CHUNK, size - start)
            z, noise = _draw(gen, start, CHUNK, seed)
            for a in range(0, count, PIECE):
                b = min(a + PIECE, count)
                piece = [n[a:b].to(device) for n in noise]
                parts.append(degrade(render(z[a:b].to(device), piece or None)))
                yield len(parts)
    return torch.cat(parts)


def pieces(size: int) -> int:
    """Progress steps (rendered pieces) of building a bank of ``size`` entries."""
    return -(-size // PIECE)


def _mse(targets: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Mean squared distances ``(U, n)`` between targets and bank images (any shapes with
    one leading axis and equal sizes): |t - b|^2 = |t|^2 - 2 t.b + |b|^2, as one matmul."""
    b = bank.flatten(1)
    t = targets.flatten(1).to(b.dtype)
    d = (b * b).sum(1)[None, :] - 2 * t @ b.T + (t * t).sum(1)[:, None]
    return d / b.shape[1]


def nearest(bank: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(U, k)`` of the ``k`` bank images closest (MSE) to each target, best first."""
    d = _mse(targets, bank)
    return d.topk(min(k, d.shape[1]), dim=1, largest=False).indices


def gather(
    gen, index: torch.Tensor, seed: int, device: torch.device
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Latents ``(U, k, ...)`` and noise ``(U, k, ...)`` of the bank entries ``index``."""
    flat = index.flatten().cpu()
    z_out = torch.empty((len(flat), *gen.latent_shape))
    n_out = [torch.empty((len(flat), *s)) for s in gen.noise_shapes()]
    for chunk in torch.unique(flat // CHUNK).tolist():
        rows = (flat // CHUNK == chunk).nonzero().flatten()
        z, noise = _draw(gen, chunk * CHUNK, CHUNK, seed)
        z_out[rows] = z[flat[rows] % CHUNK]
        for out, n in zip(n_out, noise, strict=True):
            out[rows] = n[flat[rows] % CHUNK]
    shape = tuple(index.shape)
    return (
        z_out.view(*shape, *gen.latent_shape).to(device),
        [n.view(*shape, *n.shape[1:]).to(device) for n in n_out],
    )


class TensorCache:
    """Tensors made from a :class:`BankKey` (the last few in memory), backed by files in
    the cache directory's ``folder``.

    What is stored is a pure function of its key, so a file written by any earlier session
    is reused; a damaged or unwritable file only costs making it again. ``check`` tells a
    file's tensors that fit the key from ones that do not.
    """

    def __init__(self, folder: str, suffix: str = "", capacity: int = 4, check=None) -> None:
        self.folder = folder
        self.suffix = suffix
        self.capacity = capacity
        self.check = check or (lambda key, tensors: True)
        self._items: OrderedDict[BankKey, dict[str, torch.Tensor]] = OrderedDict()

    def path(self, key: BankKey) -> Path:
        name = key.file_name().replace(".safetensors", f"{self.suffix}.safetensors")
        return cache_dir() / self.folder / name

    def get(self, key: BankKey) -> dict[str, torch.Tensor] | None:
        item = self._items.get(key)
        if item is None:
            item = self._read(key)
            if item is None:
                return None
            self._remember(key, item)
        self._items.move_to_end(key)
        return item

    def put(self, key: BankKey, tensors: dict[str, torch.Tensor]) -> None:
        self._remember(key, tensors)
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
            tmp.replace(path)
        except OSError:
            pass

    def clear(self) -> None:
        """Forget what is held in memory (the files stay)."""
        self._items.clear()

    def _remember(self, key: BankKey, tensors: dict[str, torch.Tensor]) -> None:
        self._items[key] = tensors
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def _read(self, key: BankKey) -> dict[str, torch.Tensor] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            tensors = load_file(str(path))
        except Exception:  # noqa: BLE001 - a damaged cache entry is made again
            return None
        return tensors if self.check(key, tensors) else None


class BankCache:
    """Banks of this process (the last few), backed by fp16 files in the cache directory."""

    def __init__(self, capacity: int = 4) -> None:
        self._store = TensorCache(
            "bank",
            capacity=capacity,
            check=lambda key, t: "low" in t and t["low"].shape[0] == key.size,
        )

    def path(self, key: BankKey) -> Path:
        return self._store.path(key)

    def get(self, key: BankKey) -> torch.Tensor | None:
        item = self._store.get(key)
        return None if item is None else item["low"].float()

    def put(self, key: BankKey, bank: torch.Tensor) -> None:
        self._store.put(key, {"low": bank.detach().cpu().half()})

    def clear(self) -> None:
        """Forget the banks held in memory (the files stay)."""
        self._store.clear()


CACHE = BankCache()


def key_for(render: Renderer, degrade: Degradation, size: int, seed: int) -> BankKey:
    """The cache key of the bank that ``render`` and ``degrade`` make."""
    return BankKey(
        fingerprint(render.g),
        render.channels,
        tuple(render.crop),
        degrade.kind,
        degrade.factor,
        degrade.sigma,
        size,
        seed,
    )


def build(
    render: Renderer, degrade: Degradation, key: BankKey, device: torch.device
) -> Generator[Progress, None, torch.Tensor]:
    """The bank for ``key``, rendered and stored in :data:`CACHE`. Yields one "bank" event
    per rendered piece (``done`` of :func:`pieces` in all)."""
    n = pieces(key.size)
    low = yield from relay(
        render_bank(render, degrade, key.size, key.seed, device),
        lambda done: Progress("bank", done, n, done, n, math.inf),
    )
    low = low.cpu().half().float()  # as stored: a call with a cached bank chooses the same
    CACHE.put(key, low)
    return low


class BuildBank:
    """Stage: the warm-start bank of ``size`` draws with ``seed``, from the cache when it
    was made before (then it plans nothing), else rendered (one step per piece)."""

    name = "bank"

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self._key: BankKey | None = None

    def key(self, job: Job) -> BankKey:
        """The bank's cache key for ``job`` (computed once: it hashes the weights)."""
        if self._key is None:
            self._key = key_for(job.render, job.degrade, self.size, self.seed)
        return self._key

    def plan(self, job: Job) -> int:
        return 0 if CACHE.get(self.key(job)) is not None else pieces(self.size)

    def run(self, job: Job, state: State) -> Generator[Progress, None, State]:
        key = self.key(job)
        low = CACHE.get(key)
        if low is None:
            low = yield from build(job.render, job.degrade, key, job.device)
        return replace(state, bank=low, bank_key=key)


def starts(
    gen, low: torch.Tensor, targets: torch.Tensor, k: int, seed: int, device: torch.device
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Starts ``(U, k, ...)`` (latents, noise) for targets ``(U, C, h, w)``: their ``k``
    nearest entries of the bank ``low`` drawn with ``seed``."""
    return gather(gen, nearest(low.to(targets.device), targets, k), seed, device)


#: Bank entries whose leave-one-out nearest distances calibrate :func:`atypicality`.
CALIBRATION = 512


def atypicality(low: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """How unlike the generator's own images each target is, 0 to 1 ``(U,)``.

    The share of the generator's images (bank entries, each against the rest of the bank)
    that lie nearer to their nearest bank neighbour than the target lies to its own. About
    0.5 for a tile the generator could have drawn; 1 when the tile is farther from every
    image of the bank than any of the generator's own images is.
    """
    low = low.to(targets.device)
    n = min(CALIBRATION, low.shape[0] - 1)
    if n < 1:
        raise ValueError("a bank needs at least two entries to calibrate atypicality")
    d = _mse(low[:n], low)
    d[torch.arange(n), torch.arange(n)] = math.inf  # leave each entry out
    calib = d.min(dim=1).values
    dist = _mse(targets, low).min(dim=1).values
    return (calib[None, :] < dist[:, None]).float().mean(dim=1)


#: Atypicality at which users are warned (the median tile is less like the generator's
#: images than 95% of those images are like each other).
ATYPICAL_WARNING = 0.95


def atypical_warning(score: float | None) -> str | None:
    """A warning for users when the input looks unlike what the generator draws."""
    if score is None or score < ATYPICAL_WARNING:
        return None
    return (
        f"atypicality {score:.2f}: this image looks unlike what the generator draws (its "
        "tiles are farther from the generator's images than nearly all of those are from "
        "each other); pick or train a generator for this kind of sample"
    )
