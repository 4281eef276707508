"""RotNet: predict which of four rotations was applied to an image.

Gidaris, Singh & Komodakis, "Unsupervised Representation Learning by Predicting Image Rotations",
ICLR 2018. Key design choice kept from the paper: every image of the batch appears in all four
rotations (0, 90, 180, 270 degrees) in the same batch, and the network is trained with 4-way
cross-entropy. The paper used Network-in-Network / AlexNet on 32x32+ images; our default encoder is the
small ConvNet of the classic RotNet-on-MNIST demo, for 28x28 grayscale.
`rotations` = 2 ({0, 180}), 4 (the paper's default) or 8 (45-degree steps) as in the paper's Table 2
(4 was best on CIFAR-10); 90-degree multiples are exact `rot90`, the 45-degree ones bilinear resampling.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.views import to_float
from selfsup.views.geometry import all_rotations, check_rotation_count


@dataclass
class RotationConfig(MethodConfig):
    # Adam; the paper used SGD 0.1 with momentum on larger nets. 3e-3 won recipe tuning over 1e-3 (validation
    # linear probe at 100 labels per class 78.9 vs 77.9 at equal epochs, benchmarks/results/tuning.md).
    lr: float = 3e-3
    rotations: int = 4  # 2: {0, 180}; 4: {0, 90, 180, 270} (the paper); 8: 45-degree steps


@METHODS.register("rotation")
class Rotation(Method):
    name = "rotation"
    Config = RotationConfig

    def __init__(self, config: RotationConfig, spec: DataSpec):
        super().__init__(config, spec)
        check_rotation_count(config.rotations)
        self.encoder = self.configured_encoder()
        self.head = nn.Linear(self.encoder.feature_dim(), config.rotations)  # logits over the rotations

    @property
    def degrees_per_label(self) -> int:
        return 360 // self.config.rotations

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        images, labels = all_rotations(to_float(batch), self.config.rotations)  # (RN, C, H, W), (RN,)
        logits = self.head(self.encoder(images))  # (RN, R)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(1) == labels).float().mean()
        return loss, {"pretext_acc": accuracy}

    @torch.no_grad()
    def examples(self, batch: Tensor) -> dict[str, Tensor]:
        """The first 4 images in all their rotations, with the true and predicted angle in degrees."""
        images, labels = all_rotations(to_float(batch[:4]), self.config.rotations)
        predicted = self.head(self.encoder(images)).argmax(1)
        step = self.degrees_per_label
        return {"rotated": images, "true_deg": labels * step, "pred_deg": predicted * step}
