"""RotNet: predict which of four rotations was applied to an image.

Gidaris, Singh & Komodakis, "Unsupervised Representation Learning by Predicting Image Rotations",
ICLR 2018. Key design choice kept from the paper: every image of the batch appears in all four
rotations (0, 90, 180, 270 degrees) in the same batch, and the network is trained with 4-way
cross-entropy. The paper used Network-in-Network / AlexNet on 32x32+ images; our default encoder is the
small ConvNet of the classic RotNet-on-MNIST demo, for 28x28 grayscale.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.views import four_rotations, to_float


@dataclass
class RotationConfig(MethodConfig):
    lr: float = 1e-3  # Adam; the paper used SGD 0.1 with momentum on larger nets


@METHODS.register("rotation")
class Rotation(Method):
    name = "rotation"
    Config = RotationConfig

    def __init__(self, config: RotationConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.encoder = self.configured_encoder()
        self.head = nn.Linear(self.encoder.feature_dim(), 4)  # logits over the 4 rotations

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        images, labels = four_rotations(to_float(batch))  # (4N, C, H, W), (4N,)
        logits = self.head(self.encoder(images))  # (4N, 4)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(1) == labels).float().mean()
        return loss, {"pretext_acc": accuracy}

    @torch.no_grad()
    def examples(self, batch: Tensor) -> dict[str, Tensor]:
        """The first 4 images in their four rotations, with the true and predicted angle in degrees."""
        images, labels = four_rotations(to_float(batch[:4]))
        predicted = self.head(self.encoder(images)).argmax(1)
        return {"rotated": images, "true_deg": labels * 90, "pred_deg": predicted * 90}
