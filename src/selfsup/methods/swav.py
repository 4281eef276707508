"""SwAV: predict, from every crop of an image, the cluster code of another (global) crop of it, codes
spread equally over learned prototypes.

Caron, Misra, Mairal, Goyal, Bojanowski & Joulin, "Unsupervised Learning of Visual Features by
Contrasting Cluster Assignments", NeurIPS 2020. Every crop goes through the encoder and a projection head
to an L2-normalised embedding z; its scores are the dot products with K prototypes (a linear layer without
bias whose rows are re-normalised before every step). For each of the 2 global crops, soft codes are
computed online by Sinkhorn-Knopp (3 iterations, epsilon 0.05) so that the batch is split equally among
the prototypes; codes are targets (no gradient). Swapped prediction: each code is predicted from the
scores of every other crop by cross-entropy with temperature 0.1. With small batches (256) the codes are
computed over the batch plus a queue of the last 3840 embeddings of each global crop (the paper's setting
for batch 256), switched on after the first part of training and used once full. The prototypes get no
gradient during the first steps. Across processes the Sinkhorn sums run over the global batch
(all_reduce), and the queue is split between processes, as in the authors' `main_swav.py`.

Deviations (28x28 grayscale, 2 CPU cores):
- Encoder: the ConvNet with BatchNorm, widths 64-32-128 (512-d), instead of ResNet-50.
- Projection 512 -> 512 -> 128 (the paper: 2048 -> 2048 -> 128); 300 prototypes (the paper: 3000).
- Crops: 2 global at 28 px (scale (0.14, 1)) and 6 local at 12 px (scale (0.05, 0.14)) instead of 2x224 and
  6x96 (`selfsup.views.multicrop.swav_crops`); a local crop's 1x1 feature map is pooled to the 2x2 grid of
  a global one (`methods.base.multi_crop`). 3x3 blur.
- Adam lr 1e-3, weight decay 1e-6, instead of LARS lr 0.6 (batch 256) with weight decay 1e-6.
- The queue starts after 350 steps, 7.5% of a 20-epoch Fashion-MNIST run at batch 256 (the paper: epoch 15
  of 200); prototypes frozen for the first 234 steps, one epoch of Fashion-MNIST at batch 256 (the paper:
  the first epoch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.distributed import world_size
from selfsup.errors import SelfSupError
from selfsup.losses.clustering import sinkhorn_knopp, swapped_prediction_loss
from selfsup.losses.precision import float32
from selfsup.methods.base import METHODS
from selfsup.methods.base.multi_crop import GLOBAL_CROPS, MultiCropConfig, MultiCropMethod
from selfsup.nets import mlp
from selfsup.views.multicrop import CropGroup, swav_crops


@dataclass
class SwAVConfig(MultiCropConfig):
    lr: float = 1e-3  # Adam; the paper: LARS 0.6 at batch 256
    weight_decay: float = 1e-6
    hidden_dim: int = 512  # the paper: 2048
    dim: int = 128
    prototypes: int = 300  # the paper: 3000
    temperature: float = 0.1
    epsilon: float = 0.05
    sinkhorn_iterations: int = 3
    queue_length: int = 3840  # over all processes; the paper's value at batch 256; 0: no queue
    queue_start_steps: int = 350  # 7.5% of a 20-epoch Fashion-MNIST run (the paper: epoch 15 of 200)
    freeze_prototypes_steps: int = 234  # one epoch of Fashion-MNIST at batch 256 (the paper: the first epoch)
    global_scale: tuple[float, float] = (0.14, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.14)


@METHODS.register("swav")
class SwAV(MultiCropMethod):
    name = "swav"
    Config = SwAVConfig

    queue: Tensor
    queue_count: Tensor

    def __init__(self, config: SwAVConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.projector = mlp(self.encoder.feature_dim(), config.hidden_dim, config.dim)  # Linear-BN-ReLU-Linear
        self.prototypes = nn.Linear(config.dim, config.prototypes, bias=False)
        # The last embeddings of each global crop, newest first (the authors' layout); counted to know when full.
        self.register_buffer("queue", torch.zeros(GLOBAL_CROPS, config.queue_length, config.dim))
        self.register_buffer("queue_count", torch.zeros(1, dtype=torch.long))

    def crop_groups(self, config: SwAVConfig, spec: DataSpec) -> list[CropGroup]:
        return swav_crops(spec.height, config.local_crops, self.local_size(), config.global_scale, config.local_scale)

    # --- the authors' building blocks -------------------------------------------------------------------
    @torch.no_grad()
    def _normalize_prototypes(self) -> None:
        """Project the prototypes back onto the unit sphere (before every step, as the authors do)."""
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def _queue_slots(self) -> int:
        """This process's share of the queue (the authors: queue_length // world_size)."""
        return self.config.queue_length // world_size()

    def _queue_in_use(self) -> bool:
        return self.config.queue_length > 0 and int(self.queue_count) >= self._queue_slots()

    @torch.no_grad()
    def _enqueue(self, crop: int, embeddings: Tensor) -> None:
        """Shift this crop's queue by a batch and write the newest embeddings at its front."""
        slots, n = self._queue_slots(), len(embeddings)
        if n > slots:
            raise SelfSupError(f"SwAV queue_length {self.config.queue_length} holds fewer embeddings per process "
                               f"({slots}) than a batch ({n}): raise queue_length or set it to 0 (no queue)")
        queue = self.queue[crop, :slots]
        queue[n:] = queue[:-n].clone()
        queue[:n] = embeddings

    @torch.no_grad()
    def codes(self, crop: int, scores: Tensor, embeddings: Tensor) -> Tensor:
        """Sinkhorn codes (N, K) of one global crop, computed with the queue's embeddings in front of the
        batch's once the queue is full; then this batch's embeddings join the queue (training only, after
        `queue_start_steps`)."""
        if self._queue_in_use():
            queued = float32(torch.matmul)(self.queue[crop, :self._queue_slots()], self.prototypes.weight.T)  # (L, K)
            scores = torch.cat([queued, scores])
        if self.training and self.config.queue_length > 0 and int(self.steps_done) >= self.config.queue_start_steps:
            self._enqueue(crop, embeddings)
            if crop == GLOBAL_CROPS - 1:
                self.queue_count += len(embeddings)
        return sinkhorn_knopp(scores, self.config.epsilon, self.config.sinkhorn_iterations)[-len(embeddings):]

    # --- the contract (crops, `loss` and `examples` from MultiCropMethod) --------------------------------
    def loss_from_crops(self, crops: list[Tensor]) -> tuple[Tensor, dict[str, Tensor | float]]:
        self._normalize_prototypes()
        z = F.normalize(self.projector(torch.cat(self.crop_features(crops))), dim=1)  # (V*N, dim)
        frozen = int(self.steps_done) < self.config.freeze_prototypes_steps
        prototypes = self.prototypes.weight.detach() if frozen else self.prototypes.weight  # no gradient: frozen
        scores = list(float32(F.linear)(z, prototypes).chunk(len(crops)))  # V x (N, K), fp32: Sinkhorn's exp(s / eps)
        embeddings = z.detach().chunk(len(crops))
        in_use = self._queue_in_use()
        codes = [self.codes(i, scores[i].detach(), embeddings[i]) for i in range(GLOBAL_CROPS)]
        loss = swapped_prediction_loss(codes, scores, self.config.temperature)
        used = torch.cat(codes).argmax(dim=1).unique().numel() / self.config.prototypes
        return loss, {"queue_in_use": float(in_use), "prototypes_used": used}
