"""The small ConvNet of the classic RotNet-on-MNIST demo (the lecture notes' Keras notebook).

Three conv blocks of 64, 32 and 16 filters: conv1 (3x3 stride 2, ReLU, 2x2 max-pool), conv2 (3x3, ReLU,
2x2 max-pool), conv3 (3x3 stride 2, ReLU). At 28x28: 14x14x64 -> 7x7x64, 7x7x32 -> 3x3x32, 2x2x16.
Features: conv2 gives 288 dimensions (the notebook's transfer layer), conv3 gives 64.
`batch_norm=True` adds BatchNorm after each conv (not in the notebook; helps contrastive methods).
"""
from __future__ import annotations

from torch import nn

from selfsup.nets.base import BlockEncoder
from selfsup.nets.registry import ENCODERS


def _conv(cin: int, cout: int, stride: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    return layers + [nn.ReLU(inplace=True)]


@ENCODERS.register("convnet")
class ConvNet(BlockEncoder):
    def __init__(self, in_channels: int = 1, image_size: int = 28, widths: tuple[int, int, int] = (64, 32, 16),
                 batch_norm: bool = False):
        super().__init__()
        w1, w2, w3 = widths
        self.input_shape = (in_channels, image_size, image_size)
        self.blocks = nn.ModuleDict({
            "conv1": nn.Sequential(*_conv(in_channels, w1, 2, batch_norm), nn.MaxPool2d(2)),
            "conv2": nn.Sequential(*_conv(w1, w2, 1, batch_norm), nn.MaxPool2d(2)),
            "conv3": nn.Sequential(*_conv(w2, w3, 2, batch_norm)),
        })
        # NHWC: on CPU, max-pooling in NCHW was the largest cost of this small net's step; in NHWC a
        # training step is 1.3-1.4x faster (benchmarks/encoders.py: 3,047 -> 4,224 images/s with BatchNorm).
        self.use_channels_last()
