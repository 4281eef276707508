"""The encoder registry: `build_encoder("convnet", in_channels=1, image_size=28)`."""
from __future__ import annotations

from torch import nn

from selfsup.registry import Registry

ENCODERS: Registry = Registry("encoder", "selfsup.nets")


def build_encoder(name: str, **kwargs) -> nn.Module:
    return ENCODERS.get(name)(**kwargs)
