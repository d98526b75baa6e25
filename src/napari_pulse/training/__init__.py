"""Training domain generators (StyleGAN2) from a folder of images."""

from .loop import TrainConfig, train

__all__ = ["TrainConfig", "train"]
