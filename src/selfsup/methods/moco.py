"""MoCo: predict which key, among a queue of past keys, encodes another view of the query's image.

He, Fan, Wu, Xie & Girshick, "Momentum Contrast for Unsupervised Visual Representation Learning",
CVPR 2020 ("mocov1"), and Chen, Fan, Girshick & He, "Improved Baselines with Momentum Contrastive
Learning", 2020 ("mocov2": MLP head, temperature 0.2, blur in the views, cosine lr schedule).
A query encoder (trained) and a key encoder (a copy moved only by momentum, no gradient) embed two
views; InfoNCE classifies the positive key (class 0) against a queue of K keys from earlier batches, which
is then refreshed with this batch's keys (gathered from every process). Shuffling BN (section 3.3): keys
are computed on a batch shuffled across processes, so a key's BatchNorm statistics are not those of its
query's batch, which would let the model find the positive by batch statistics ("cheat"). Structure after
the authors' builder.py: `_momentum_update_key_encoder`, `_dequeue_and_enqueue`, `_batch_shuffle_ddp`,
`_batch_unshuffle_ddp`; the momentum, queue and shuffle steps call the shared helpers (`nets.momentum`,
`nets.queue`, `nets.split_batchnorm`, `selfsup.distributed`), and views, `loss` and `examples` come from
`TwoViewMethod`.

Deviations (28x28 grayscale, 2 CPU cores):
- One process (`split_bn=8`; 0 = off): the authors' 8 GPUs are emulated as in their CIFAR-10 demo, BatchNorm
  of both encoders normalising the batch in 8 groups (`nets.split_batchnorm`), the keys shuffled between
  groups before the key encoder and unshuffled after (`_batch_shuffle_groups`). Multi-process runs shuffle
  across processes instead. Outside MoCo's loss the layers are plain BatchNorm with the same state_dict keys:
  the transferred encoder is a normal one.
- Key momentum 0.99 (the authors' CIFAR-10 demo) instead of 0.999: the key encoder averages the last
  1/(1-m) = 100 steps, not 1000. The paper's 0.999 is 0.1% of its ~1M steps; our runs are a few thousand
  (20 epochs of 60k at batch 256: about 4,700), where 0.999 keeps 0.999^390 = 68% of the random init after 390
  steps and lags the query by ~4 epochs; 0.99 keeps 0.99^390 = 2%.
- Queue scaled to the dataset by default (`queue_size=0`): the paper's 65536 keys are 5% of ImageNet's
  1.28M images, so the queue holds 5% of the training items, rounded up to a multiple of 256 and at least
  1024 (3072 for Fashion-MNIST's 60k; 65536 at most). 4096 when the data size is unknown.
- MoCo v2 temperature 0.1 instead of 0.2: tuned on validation at equal epochs (`benchmarks/results/tuning.md`,
  +0.5 points on the validation linear probe, in two separate trials).
- The momentum update runs in `after_step` (right after each optimizer step) rather than at the start of
  the next forward: the same sequence of key encoders.
- Any batch size fits the queue (wrap-around writes); the authors assert K % batch == 0.
- MoCo v1's step schedule (lr x0.1 at epochs 120 and 160) is replaced by a constant lr.
- Views: `mocov1_views` / `mocov2_views`, crop (0.2, 1), 3x3 blur at 28x28, no saturation/hue on grayscale.
- Encoder: the ConvNet with BatchNorm, widths 64-32-128 (512-d), instead of ResNet-50.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.distributed import batch_shuffle, batch_unshuffle, gather, is_distributed
from selfsup.losses.precision import float32
from selfsup.methods.base import METHODS
from selfsup.methods.base.two_view import TwoViewConfig, TwoViewMethod
from selfsup.nets.momentum import ema_update, frozen_copy
from selfsup.nets.queue import enqueue
from selfsup.nets.split_batchnorm import batchnorm_splits, has_split_batchnorm, shuffle_groups, use_split_batchnorm
from selfsup.views.augment import view_preset


@dataclass
class MoCoConfig(TwoViewConfig):
    """MoCo v1 (He et al. 2020)."""

    optimizer: str = "sgd"
    lr: float = 0.03
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD momentum (the key encoder's momentum is `key_momentum`)
    schedule: str = "constant"  # the paper: step decay at epochs 120 and 160 of 200
    dim: int = 128
    queue_size: int = 0  # 0: 5% of the training items (the paper's 65536 / 1.28M); see queue_length()
    key_momentum: float = 0.99  # the paper: 0.999 over ~1M steps; 0.99 suits a few thousand (docstring)
    split_bn: int = 8  # one process: BatchNorm in 8 groups, keys shuffled between them (shuffling BN); 0 = off
    temperature: float = 0.07
    mlp: bool = False
    views: str = "mocov1"


@dataclass
class MoCoV2Config(MoCoConfig):
    """MoCo v2 (Chen et al. 2020): MLP head, blur, cosine schedule; temperature 0.1 (the paper: 0.2; tuned)."""

    schedule: str = "cosine"
    temperature: float = 0.1  # the paper: 0.2 (tuned on validation: benchmarks/results/tuning.md)
    mlp: bool = True
    views: str = "mocov2"


def projection_head(in_dim: int, dim: int, use_mlp: bool) -> nn.Module:
    """v1: one linear layer; v2: Linear-ReLU-Linear with a hidden layer as wide as the features."""
    if not use_mlp:
        return nn.Linear(in_dim, dim)
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, dim))


def queue_length(config: MoCoConfig, spec: DataSpec) -> int:
    """The configured queue size, or 5% of the dataset rounded up to 256 keys, within [1024, 65536]."""
    if config.queue_size:
        return config.queue_size
    if not spec.size:
        return 4096
    five_percent = math.ceil(0.05 * spec.size / 256) * 256  # whole batches of 256 keys
    return min(65536, max(1024, five_percent))


class MoCo(TwoViewMethod):
    name = "moco"
    Config = MoCoConfig
    view_names = ("query_view", "key_view")

    queue: Tensor
    queue_ptr: Tensor

    def __init__(self, config: MoCoConfig, spec: DataSpec):
        super().__init__(config, spec, view_preset(config.views))
        if config.split_bn > 1:
            use_split_batchnorm(self.encoder)  # the same state_dict; splits only inside `query` and `keys`
        self.head = projection_head(self.encoder.feature_dim(), config.dim, config.mlp)
        self.encoder_k = frozen_copy(self.encoder)
        self.head_k = frozen_copy(self.head)
        self.register_buffer("queue", F.normalize(torch.randn(config.dim, queue_length(config, spec)), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    # --- the authors' building blocks ---------------------------------------------------------------
    @torch.no_grad()
    def _momentum_update_key_encoder(self) -> None:
        """key <- m * key + (1 - m) * query, for the encoder and the head."""
        ema_update(self.encoder_k, self.encoder, self.config.key_momentum)
        ema_update(self.head_k, self.head, self.config.key_momentum)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: Tensor) -> None:
        """Write the keys of every process over the oldest entries of the queue and advance the pointer."""
        enqueue(self.queue.T, self.queue_ptr, gather(keys))  # the queue is (dim, K): write its columns

    @torch.no_grad()
    def _batch_shuffle_ddp(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Shuffle the global batch across processes so BatchNorm statistics of a key's process do not
        contain its query's image (shuffling BN). Returns this process's shuffled part and the inverse
        permutation. Identity in one process (there, `_batch_shuffle_groups` with `split_bn`)."""
        return batch_shuffle(x)

    def bn_groups(self, n: int) -> int:
        """How many BatchNorm groups a training batch of n images is split into: `split_bn` in one process,
        fewer (at least 2 images each) for a batch under 2 * split_bn; 1 (no split) when multi-process,
        off, or the encoder has no BatchNorm. Sizes differ by at most one where n is not a multiple."""
        if self.config.split_bn <= 1 or is_distributed() or not self.training:
            return 1
        if not has_split_batchnorm(self.encoder):  # no BatchNorm (or replaced by Identity): nothing to split
            return 1
        return max(1, min(self.config.split_bn, n // 2))

    @torch.no_grad()
    def _batch_shuffle_groups(self, x: Tensor, groups: int) -> tuple[Tensor, Tensor]:
        """One process: shuffle the batch so the key encoder's BatchNorm groups differ from the query
        encoder's (`key_shuffle`). Returns the shuffled batch and the inverse permutation."""
        return shuffle_groups(x, groups)

    @torch.no_grad()
    def _batch_unshuffle_ddp(self, x: Tensor, idx_unshuffle: Tensor) -> Tensor:
        """Undo `_batch_shuffle_ddp`: this process gets back the keys of its own images, in order."""
        return batch_unshuffle(x, idx_unshuffle)

    # --- the contract (views, `loss` and `examples` from TwoViewMethod) ---------------------------------
    def query(self, im_q: Tensor) -> Tensor:
        """Normalised query embeddings; BatchNorm groups are consecutive parts of the batch (`bn_groups`)."""
        with batchnorm_splits(self.encoder, self.bn_groups(len(im_q))):
            return F.normalize(self.head(self.encoder(im_q)), dim=1)

    @torch.no_grad()
    def keys(self, im_k: Tensor) -> Tensor:
        """Normalised key embeddings, in the order of `im_k`, computed on a shuffled batch."""
        groups = self.bn_groups(len(im_k))
        if groups > 1:  # one process: shuffle between the BatchNorm groups
            im_k, idx_unshuffle = self._batch_shuffle_groups(im_k, groups)
            with batchnorm_splits(self.encoder_k, groups):
                k = F.normalize(self.head_k(self.encoder_k(im_k)), dim=1)
            return k[idx_unshuffle]
        im_k, idx_unshuffle = self._batch_shuffle_ddp(im_k)
        k = F.normalize(self.head_k(self.encoder_k(im_k)), dim=1)
        return self._batch_unshuffle_ddp(k, idx_unshuffle)

    def loss_from_views(self, im_q: Tensor, im_k: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """InfoNCE with the positive key as class 0; enqueues this batch's keys when training."""
        q = self.query(im_q)  # (N, dim)
        k = self.keys(im_k)  # (N, dim), no gradient
        logits = queue_logits(q, k, self.queue.clone().detach(), self.config.temperature)  # clone: enqueue writes in place
        labels = torch.zeros(len(logits), dtype=torch.long, device=logits.device)  # positives are class 0
        loss = F.cross_entropy(logits, labels)
        if self.training:
            self._dequeue_and_enqueue(k)
        return loss, {"pretext_acc": (logits.detach().argmax(1) == 0).float().mean()}

    def after_step(self, progress: float) -> None:
        self._momentum_update_key_encoder()



@float32
def queue_logits(q: Tensor, k: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """Nx(1+K) logits over temperature: the positive key (class 0), then the K queued negatives (queue: dim x K)."""
    l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)  # (N, 1)
    l_neg = torch.einsum("nc,ck->nk", q, queue)  # (N, K)
    return torch.cat([l_pos, l_neg], dim=1) / temperature  # logits: Nx(1+K)


@METHODS.register("mocov1")
class MoCoV1(MoCo):
    name = "mocov1"
    Config = MoCoConfig


@METHODS.register("mocov2")
class MoCoV2(MoCo):
    name = "mocov2"
    Config = MoCoV2Config
