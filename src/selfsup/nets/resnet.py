"""CIFAR-style ResNet-18 (He et al., 2016): 3x3 stride-1 stem and no max-pool, for small images.

Blocks: stem, layer1..layer4 (two BasicBlocks each, widths 64-128-256-512 times `width`/64), global
average pooling. At 28x28 it costs about 2.7 GFLOP per image forward+backward: meant for GPUs.
"""
from __future__ import annotations

from torch import Tensor, nn

from selfsup.nets.base import BlockEncoder
from selfsup.nets.registry import ENCODERS


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:  # projection shortcut when the shape changes
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(x)).relu()
        return (self.bn2(self.conv2(out)) + self.shortcut(x)).relu()


@ENCODERS.register("resnet18")
class ResNet18(BlockEncoder):
    def __init__(self, in_channels: int = 1, image_size: int = 28, width: int = 64):
        super().__init__()
        self.input_shape = (in_channels, image_size, image_size)
        widths = [width, 2 * width, 4 * width, 8 * width]
        blocks = {"stem": nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                                        nn.BatchNorm2d(width), nn.ReLU(inplace=True))}
        cin = width
        for i, cout in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks[f"layer{i + 1}"] = nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))
            cin = cout
        self.blocks = nn.ModuleDict(blocks)

    def pool(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3)) if x.dim() == 4 else x
