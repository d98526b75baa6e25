"""Domain generators: the protocol, the bundled architectures and the registry."""

from .base import DomainGenerator, ModelCard
from .registry import ENTRY_POINT_GROUP, GeneratorInfo, available, default_for, load
from .safe_pickle import UnsafeCheckpointError

__all__ = [
    "ENTRY_POINT_GROUP",
    "DomainGenerator",
    "GeneratorInfo",
    "ModelCard",
    "UnsafeCheckpointError",
    "available",
    "default_for",
    "load",
]
