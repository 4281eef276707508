"""An encoder for image tiles whose features have the same size on a tile as on a whole image.

Used by the tile-based pretext tasks (jigsaw, relative patch location): they train one shared encoder
on small tiles, and transfer evaluates the same encoder on whole images.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.errors import SelfSupError
from selfsup.nets.base import BlockEncoder


class TileEncoder(BlockEncoder):
    """Shares the blocks of `inner` (built for whole images) and average-pools each block's map to the
    size it has on a whole image, so a small tile and a whole image give features of the same size (on a
    whole image the pooling changes nothing: evaluation sees exactly the inner encoder's features)."""

    def __init__(self, inner: BlockEncoder):
        super().__init__()
        self.blocks = inner.blocks
        self.input_shape = inner.input_shape
        self.channels_last = inner.channels_last
        self.grids = self._whole_image_grids(inner)

    @torch.no_grad()
    def _whole_image_grids(self, inner: BlockEncoder) -> dict[str, tuple[int, int]]:
        was_training = inner.training
        inner.eval()
        x, grids, dims = torch.zeros(1, *self.input_shape), {}, {}
        for name, block in self.blocks.items():
            x = block(x)
            if x.dim() != 4:
                raise SelfSupError(f"{type(inner).__name__} block {name!r} gives no spatial map; "
                                   f"tile-based methods need a convolutional encoder (e.g. convnet, resnet18)")
            globally_pooled = inner.pool(x).shape[1] == x.shape[1]  # e.g. ResNet's global average pool
            grids[name] = (1, 1) if globally_pooled else tuple(x.shape[-2:])
            dims[name] = x.shape[1] * grids[name][0] * grids[name][1]
        inner.train(was_training)
        object.__setattr__(self, "_dims_cache", dims)  # feature_dim reads it; not a module attribute
        return grids

    def forward(self, x: Tensor, upto: str | None = None) -> Tensor:
        x, name = self.feature_map(x, upto)
        return F.adaptive_avg_pool2d(x, self.grids[name]).flatten(1)
