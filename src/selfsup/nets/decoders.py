"""Decoders that turn an encoder's output back into pixels: whole images from a feature vector
(inpainting, super-resolution) and per-pixel class logits from a feature map (colorization, split-brain)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from selfsup.errors import SelfSupError


class ImageDecoder(nn.Module):
    """Feature vector (N, D) -> image (N, C, S, S): one fc layer to a (width, S/4, S/4) map, then two
    stride-2 transposed convolutions (DCGAN-style, BatchNorm + ReLU between)."""

    def __init__(self, in_dim: int, channels: int, image_size: int, width: int = 64, sigmoid: bool = True):
        super().__init__()
        if image_size % 4:
            raise SelfSupError(f"the decoder upsamples x4 from a fc map, so the image size must be a multiple "
                               f"of 4; got {image_size}")
        self.width, self.side = width, image_size // 4
        self.fc = nn.Sequential(nn.Linear(in_dim, width * self.side ** 2), nn.ReLU(inplace=True))
        self.up = nn.Sequential(
            nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2),
            nn.ReLU(inplace=True), nn.ConvTranspose2d(width // 2, channels, 4, 2, 1))
        self.sigmoid = sigmoid

    def forward(self, features: Tensor) -> Tensor:
        x = self.up(self.fc(features).view(-1, self.width, self.side, self.side))
        return torch.sigmoid(x) if self.sigmoid else x


def color_decoder(in_channels: int, width: int, classes: int, size: tuple[int, int]) -> nn.Sequential:
    """Feature map -> per-pixel class logits at `size`: conv, bilinear upsampling, conv, 1x1 classifier."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        nn.Upsample(size=size, mode="bilinear", align_corners=False),
        nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        nn.Conv2d(width, classes, 1))
