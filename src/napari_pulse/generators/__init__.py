"""Domain generators: the protocol, the bundled architectures and the registry."""

from .base import DomainGenerator, ModelCard
from .registry import ENTRY_POINT_GROUP, GeneratorInfo, available, default_for, load

__all__ = [
    "ENTRY_POINT_GROUP",
    "DomainGenerator",
    "GeneratorInfo",
    "ModelCard",
    "available",
    "default_for",
    "load",
]
