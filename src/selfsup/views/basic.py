"""Conversions between stored uint8 images and the float tensors networks see."""
from __future__ import annotations

from torch import Tensor


def to_float(images: Tensor) -> Tensor:
    """uint8 (N, C, H, W) in [0, 255] -> float32 in [0, 1]; float input passes through unchanged."""
    return images.float().div_(255.0) if images.dtype.is_floating_point is False else images
