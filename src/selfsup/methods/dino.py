"""DINO: predict, from every crop of an image, the momentum teacher's output distribution for another
(global) crop of it: self-distillation with no labels.

Caron, Touvron, Misra, Jégou, Mairal, Bojanowski & Joulin, "Emerging Properties in Self-Supervised Vision
Transformers", ICCV 2021. A student (encoder + DINO head) sees 2 global and several local crops of every
image; a teacher with the same architecture, no gradient, and weights that follow the student as an
exponential moving average (momentum 0.996 rising to 1 on a cosine), sees the 2 global crops only. The
teacher's outputs are centred (minus an EMA of their batch mean, momentum 0.9: against one dimension
dominating) and sharpened (temperature 0.04 warmed up to 0.07: against the uniform distribution); the
loss is the cross-entropy between the teacher's distribution for each global crop and the student's
(temperature 0.1) for every other crop. The DINO head is an MLP (GELU, no BatchNorm) to a bottleneck, L2
normalisation, and a weight-normalised linear layer whose norm is fixed to 1. Across processes the centre
uses the mean over the global batch (all_reduce), as in the authors' `update_center`.

Deviations (28x28 grayscale, 2 CPU cores):
- Encoder: the ConvNet with BatchNorm, widths 64-32-128 (512-d), instead of ViT-S/16 or ResNet-50.
- Head widths 512 -> 512 -> 128 -> 1024 (the paper: 2048 -> 2048 -> 256 -> 65536).
- Crops: 2 global at 28 px (scale (0.4, 1)) and 6 local at 12 px (scale (0.05, 0.4)) instead of 2x224 and
  10x96 (`selfsup.views.multicrop.dino_crops`); a local crop's 1x1 feature map is pooled to the 2x2 grid
  of a global one (`methods.base.multi_crop`). 3x3 blur.
- AdamW lr 5e-4 with a constant weight decay 0.04 (the paper: 5e-4 x batch/256, weight decay 0.04 -> 0.4 on
  a cosine); 2 warm-up epochs of 20 (the paper: 10 of 100); no gradient clipping (the paper: 3.0).
- Teacher temperature warmed up over the first 30% of training (the paper: 30 of 100 epochs).
- The last layer is frozen for the first 234 steps, one epoch of Fashion-MNIST at batch 256 (the paper:
  the first epoch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.losses.distillation import dino_loss, dino_targets, updated_center
from selfsup.methods.base import METHODS
from selfsup.methods.base.multi_crop import GLOBAL_CROPS, MultiCropConfig, MultiCropMethod
from selfsup.nets.momentum import cosine_tau, ema_update, frozen_copy
from selfsup.views.multicrop import CropGroup, dino_crops


@dataclass
class DINOConfig(MultiCropConfig):
    optimizer: str = "adamw"
    lr: float = 5e-4  # the paper: 5e-4 x batch/256
    weight_decay: float = 0.04  # the paper: 0.04 -> 0.4 on a cosine
    warmup_epochs: float = 2.0  # the paper: 10 of 100
    hidden_dim: int = 512  # the paper: 2048
    bottleneck_dim: int = 128  # the paper: 256
    out_dim: int = 1024  # the paper: 65536
    student_temperature: float = 0.1
    warmup_teacher_temperature: float = 0.04
    teacher_temperature: float = 0.07  # reached at the end of the warm-up
    teacher_temperature_warmup: float = 0.3  # fraction of training (the paper: 30 of 100 epochs)
    center_momentum: float = 0.9
    base_momentum: float = 0.996  # the teacher's EMA rate at the start; rises to 1 on a cosine
    freeze_last_layer_steps: int = 234  # one epoch of Fashion-MNIST at batch 256 (the paper: the first epoch)
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)


class DINOHead(nn.Module):
    """MLP (Linear-GELU, Linear-GELU, Linear) to a bottleneck, L2 normalisation, then a linear layer with
    unit-norm weight rows: the authors' weight-normalised last layer with its norm g fixed to 1."""

    def __init__(self, in_dim: int, hidden_dim: int, bottleneck_dim: int, out_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
                                 nn.Linear(hidden_dim, bottleneck_dim))
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):  # the authors' init
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = nn.Linear(bottleneck_dim, out_dim, bias=False)

    def forward(self, x: Tensor, freeze_last_layer: bool = False) -> Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        weight = self.last_layer.weight.detach() if freeze_last_layer else self.last_layer.weight
        return F.linear(x, F.normalize(weight, dim=1))  # weight norm with g = 1: w = v / ||v||


@METHODS.register("dino")
class DINO(MultiCropMethod):
    name = "dino"
    Config = DINOConfig

    center: Tensor
    progress: Tensor

    def __init__(self, config: DINOConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.head = DINOHead(self.encoder.feature_dim(), config.hidden_dim, config.bottleneck_dim, config.out_dim)
        self.teacher_encoder = frozen_copy(self.encoder)
        self.teacher_head = frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(1, config.out_dim))
        self.register_buffer("progress", torch.zeros(1))  # fraction of training done, for the schedules
        self.momentum = config.base_momentum

    def crop_groups(self, config: DINOConfig, spec: DataSpec) -> list[CropGroup]:
        return dino_crops(spec.height, config.local_crops, self.local_size(), config.global_scale, config.local_scale)

    def teacher_temperature(self) -> float:
        """Linear warm-up from `warmup_teacher_temperature` to `teacher_temperature`, then constant."""
        c = self.config
        ramp = min(1.0, float(self.progress) / c.teacher_temperature_warmup) if c.teacher_temperature_warmup > 0 else 1.0
        return c.warmup_teacher_temperature + ramp * (c.teacher_temperature - c.warmup_teacher_temperature)

    def student(self, crops: list[Tensor]) -> list[Tensor]:
        """The student's logits for every crop; one head pass over all of them (the authors' wrapper)."""
        freeze = int(self.steps_done) < self.config.freeze_last_layer_steps
        return list(self.head(torch.cat(self.crop_features(crops)), freeze).chunk(len(crops)))

    @torch.no_grad()
    def teacher(self, global_crops: list[Tensor]) -> list[Tensor]:
        """The teacher's logits for the global crops only."""
        features = self.crop_features(global_crops, self.teacher_encoder)
        return list(self.teacher_head(torch.cat(features)).chunk(len(global_crops)))

    def loss_from_crops(self, crops: list[Tensor]) -> tuple[Tensor, dict[str, Tensor | float]]:
        student_logits = self.student(crops)  # global crops first, as the teacher's
        teacher_logits = self.teacher(crops[:GLOBAL_CROPS])
        temperature = self.teacher_temperature()
        loss = dino_loss(student_logits, teacher_logits, self.center, self.config.student_temperature, temperature)
        metrics = {"teacher_temperature": temperature, "momentum": self.momentum,
                   "teacher_entropy": entropy(dino_targets(teacher_logits, self.center, temperature))}
        if self.training:  # after the loss, with this batch's teacher outputs (the authors' order)
            self.center.copy_(updated_center(self.center, torch.cat(teacher_logits), self.config.center_momentum))
        return loss, metrics

    def after_step(self, progress: float) -> None:
        super().after_step(progress)
        self.progress.fill_(progress)
        self.momentum = cosine_tau(self.config.base_momentum, progress)
        ema_update(self.teacher_encoder, self.encoder, self.momentum)
        ema_update(self.teacher_head, self.head, self.momentum)


def entropy(distributions: list[Tensor]) -> Tensor:
    """Mean entropy (nats) of the rows: near 0 when sharpening dominates, log K when centring does."""
    p = torch.cat(distributions)
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=1).mean()
