"""MoCo v3: predict, from one view, which key of the whole batch a momentum encoder made of the other view.

Chen, Xie & He, "An Empirical Study of Training Self-Supervised Vision Transformers", ICCV 2021.
No queue: the keys are the momentum encoder's projections of the other view of every image in the global
batch (gathered from every process), the positive being the query's own image. The query side is the
encoder, a 3-layer projector and a 2-layer predictor (both MLPs with BatchNorm, the last BatchNorm without
affine parameters, as in the authors' builder.py); the key side is a momentum copy of encoder and projector
that gets no gradient, its momentum rising from 0.99 to 1 on a cosine over training. The loss
ctr(q1, k2) + ctr(q2, k1) is InfoNCE with temperature 0.2 scaled by 2t (`losses.momentum_contrast`). The
ViT's patch projection keeps its random initialisation and is never trained (section 4.2, the paper's
stability trick); the momentum copy's then stays equal to it. Views: BYOL's asymmetric pair, as in the paper.

Deviations (28x28 grayscale, 2 CPU cores):
- Encoder "vit_tiny" with patch size 4 (7x7 = 49 patches), width 64, depth 4, 4 heads, instead of ViT-S/B
  at 224x224 with patch 16; features are the mean of the patch tokens (the paper: the class token).
- Projector/predictor hidden width 512 instead of 4096, output 128 instead of 256 (a 64-d encoder).
- AdamW lr 1e-3, weight decay 0.1, 1 warm-up epoch, instead of lr 1.5e-4 x batch/256 and 40 of 300 epochs.
- Views: `byol_views`, crop (0.2, 1) instead of (0.08, 1), 3x3 blur at 28x28.
- The momentum update runs in `after_step`, right after each optimizer step, rather than at the start of the
  next forward: the same sequence of momentum encoders.
- Fine-tuning leaves the patch projection at its random init too (the method freezes it when built), as it
  does for the random-init row.
- `sync_bn` (the paper syncs BatchNorm across its GPUs) converts the heads' BatchNorm when multi-process on
  GPUs; torch has no CPU SyncBatchNorm, so on CPU statistics stay per process.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.data.base import DataSpec
from selfsup.distributed import gather, rank
from selfsup.errors import SelfSupError
from selfsup.losses.momentum_contrast import scaled_info_nce
from selfsup.methods.base import METHODS
from selfsup.methods.base.two_view import TwoViewConfig, TwoViewMethod
from selfsup.nets import mlp
from selfsup.nets.momentum import cosine_tau, ema_update, frozen_copy
from selfsup.nets.vit import ViT
from selfsup.views.augment import byol_views


@dataclass
class MoCoV3Config(TwoViewConfig):
    encoder: str = "vit_tiny"
    encoder_kwargs: dict = field(default_factory=lambda: {"patch_size": 4})  # 7x7 patches on 28x28
    optimizer: str = "adamw"
    lr: float = 1e-3  # the paper: 1.5e-4 x batch/256 over 300 epochs; raised for short runs
    weight_decay: float = 0.1
    warmup_epochs: float = 1.0  # the paper: 40 of 300
    temperature: float = 0.2  # the paper's value for ViT
    base_momentum: float = 0.99  # momentum of the key encoder at the start; rises to 1 on a cosine
    hidden_dim: int = 512  # the paper: 4096
    projection_dim: int = 128  # the paper: 256
    freeze_patch_projection: bool = True  # the paper's stability trick: a random, fixed patch projection
    sync_bn: bool = True


def freeze_patch_projection(encoder: ViT) -> None:
    """Keep the ViT's patch projection at its random initialisation: no gradient, never stepped."""
    for p in encoder.blocks["patch_embed"].proj.parameters():
        p.requires_grad_(False)


@METHODS.register("mocov3")
class MoCoV3(TwoViewMethod):
    name = "mocov3"
    Config = MoCoV3Config
    # Not timed here: a step runs the ViT on all 49 patches of 4 views (2 with gradient); MAE's encoder sees 12.
    default_epochs = 5
    view_names = ("query_view", "key_view")
    sync_bn_modules = ("projector", "predictor", "momentum_projector")

    def __init__(self, config: MoCoV3Config, spec: DataSpec):
        super().__init__(config, spec, byol_views())  # asymmetric: one augmentation per view
        if not isinstance(self.encoder, ViT):
            raise SelfSupError(f"MoCo v3 needs a ViT encoder (e.g. 'vit_tiny'), got {config.encoder!r}")
        if config.freeze_patch_projection:
            freeze_patch_projection(self.encoder)
        # Projector: 3 layers (the authors' ViT setting); predictor: 2 layers; both end in a BatchNorm
        # without affine parameters.
        self.projector = mlp(self.encoder.feature_dim(), config.hidden_dim, config.projection_dim, layers=3,
                             last_batch_norm=True)
        self.predictor = mlp(config.projection_dim, config.hidden_dim, config.projection_dim, layers=2,
                             last_batch_norm=True)
        self.momentum_encoder = frozen_copy(self.encoder)
        self.momentum_projector = frozen_copy(self.projector)
        self.momentum = config.base_momentum

    def query(self, view: Tensor) -> Tensor:
        """(N, projection_dim) predictions of the query side, with gradient."""
        return self.predictor(self.projector(self.encoder(view)))

    @torch.no_grad()
    def keys(self, view: Tensor) -> Tensor:
        """(N * world size, projection_dim) keys of the momentum side for the global batch, in rank order."""
        return gather(self.momentum_projector(self.momentum_encoder(view)))

    def contrast(self, query: Tensor, keys: Tensor) -> Tensor:
        """ctr(q, k): this process's queries have their positives in its slice of the gathered keys."""
        return scaled_info_nce(query, keys, self.config.temperature, offset=rank() * len(query))

    def loss_from_views(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, dict[str, Tensor | float]]:
        self.sync_batchnorm_once(view1.device)
        # One view per pass, as in the authors' code: the heads' BatchNorm normalises each view's batch alone.
        q1, q2 = self.query(view1), self.query(view2)
        k1, k2 = self.keys(view1), self.keys(view2)
        loss = self.contrast(q1, k2) + self.contrast(q2, k1)  # symmetric
        return loss, {"pretext_acc": self.positive_is_nearest(q1.detach(), k2), "momentum": self.momentum}

    def positive_is_nearest(self, query: Tensor, keys: Tensor) -> Tensor:
        """Fraction of queries whose most similar key of the global batch is their own image's."""
        own = rank() * len(query) + torch.arange(len(query), device=query.device)
        similarity = F.normalize(query, dim=1) @ F.normalize(keys, dim=1).T
        return (similarity.argmax(1) == own).float().mean()

    def after_step(self, progress: float) -> None:
        self.momentum = cosine_tau(self.config.base_momentum, progress)
        ema_update(self.momentum_encoder, self.encoder, self.momentum)
        ema_update(self.momentum_projector, self.projector, self.momentum)
