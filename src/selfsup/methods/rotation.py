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

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.views import four_rotations, to_float

ROTATION_COUNTS = (2, 4, 8)


@dataclass
class RotationConfig(MethodConfig):
    lr: float = 1e-3  # Adam; the paper used SGD 0.1 with momentum on larger nets
    rotations: int = 4  # 2: {0, 180}; 4: {0, 90, 180, 270} (the paper); 8: 45-degree steps


def check_rotation_count(rotations: int) -> None:
    if rotations not in ROTATION_COUNTS:
        raise SelfSupError(f"RotNet takes 2, 4 or 8 rotations, got rotations={rotations!r}; use 4 (the paper's "
                           f"0/90/180/270 degrees), 2 (0/180) or 8 (45-degree steps)")


def rotate(images: Tensor, degrees: float) -> Tensor:
    """The whole batch (N, C, H, W) rotated `degrees` counter-clockwise about the image centre, by one
    `affine_grid` + `grid_sample` (bilinear, zeros outside). At 90-degree multiples on square images it
    equals `torch.rot90(images, degrees // 90, dims=(2, 3))` up to float rounding."""
    a = math.radians(degrees)
    # theta maps output coordinates to input ones (x right, y down, in [-1, 1]); this sign is rot90's sense
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]],
                         dtype=images.dtype, device=images.device).expand(len(images), 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def all_rotations(images: Tensor, rotations: int = 4) -> tuple[Tensor, Tensor]:
    """Every image at each of the `rotations` angles k * 360 / rotations degrees (counter-clockwise).

    Returns (rotations * N, C, H, W) images ordered rotation-major ([all at angle 0], [all at angle 1], ...)
    and labels (rotations * N,) = k. Multiples of 90 degrees are exact `torch.rot90`; with 8 rotations the
    four 45-degree ones are the exact ones turned by a further 45 degrees, all in one `rotate` call.
    Needs square images and floats (for 8).
    """
    check_rotation_count(rotations)
    if rotations == 4:
        return four_rotations(images)
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"rotation needs square images, got {tuple(images.shape[-2:])}")
    if rotations == 2:
        rotated = torch.cat([images, torch.rot90(images, 2, dims=(2, 3))])
    else:
        exact, _ = four_rotations(images)  # (4N, ...): 0, 90, 180, 270
        tilted = rotate(exact, 45.0)  # 45, 135, 225, 315
        rotated = torch.stack([exact.unflatten(0, (4, -1)), tilted.unflatten(0, (4, -1))], dim=1).flatten(0, 2)
    labels = torch.arange(rotations, device=images.device).repeat_interleave(len(images))
    return rotated, labels


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
