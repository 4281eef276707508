"""NNCLR: predict which image of the batch the nearest neighbour of another view's embedding came with.

Dwibedi, Aytar, Tompson, Sermanet & Zisserman, "With a Little Help from My Friends: Nearest-Neighbor
Contrastive Learning of Visual Representations", ICCV 2021. SimCLR with one change: the positive of a view
is not its own embedding but its nearest neighbour in a support set Q, a queue of the embeddings of earlier
batches, so positives are other images that the network already finds alike. Two views of every image go
through a shared encoder and a projector (three layers, BatchNorm on each); a predictor (two layers) maps each
projection to a prediction p; the InfoNCE loss classifies, among the second views' predictions, the one made
from the same image as the neighbour NN(z1, Q) of a first view, plus the paper's symmetric term (each
prediction against all neighbours), and the same with the views swapped (`selfsup.losses.nearest_neighbour`).
The neighbour is a stored vector and carries no gradient. After the loss the first view's normalised
projections enter the queue. Across processes the contrast is over the global batch (predictions gathered
with gradients, neighbours without) and the queue takes the gathered global batch, so every process holds
the same support set. Metric: `pretext_acc`, how often a neighbour's own image has the most similar
prediction.

Deviations (28x28 grayscale, 2 CPU cores):
- Adam lr 1e-3 instead of LARS (batch 4096); weight decay 1e-6 as in the paper.
- Projector 512 -> 512 -> 512 -> 128 instead of 2048 -> 2048 -> 2048 -> 256; predictor 128 -> 1024 -> 128
  instead of 256 -> 4096 -> 256 (its hidden layer twice the projector's, as in the paper).
- Support set of 4096 embeddings instead of 98304: about the paper's share of its training set (98304 of
  ImageNet's 1.28M images is 7.7%; 4096 of Fashion-MNIST's 60k is 6.8%). It starts as random unit vectors,
  replaced by real embeddings within the first 16 steps at batch 256.
- Temperature 0.1 as in the paper, at batch 256 instead of 4096.
- Views: `byol_views` (the paper's: blur 1.0 / 0.1, solarise 0 / 0.2), crop (0.2, 1), 3x3 blur.
- Encoder: the ConvNet with BatchNorm, widths 64-32-128 (512-d), instead of ResNet-50.
- `sync_bn` converts BatchNorm when multi-process on GPUs; torch has no CPU SyncBatchNorm.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.data.base import DataSpec
from selfsup.distributed import gather, gather_with_grad, rank
from selfsup.losses.nearest_neighbour import nnclr_loss
from selfsup.methods.base import METHODS
from selfsup.methods.base.two_view import TwoViewConfig, TwoViewMethod
from selfsup.nets import mlp
from selfsup.nets.queue import enqueue
from selfsup.views.augment import byol_views


@dataclass
class NNCLRConfig(TwoViewConfig):
    lr: float = 1e-3  # Adam; the paper: LARS at batch 4096
    weight_decay: float = 1e-6
    temperature: float = 0.1
    hidden_dim: int = 512  # projector's hidden width; the paper: 2048
    projection_dim: int = 128  # the paper: 256
    predictor_hidden_dim: int = 1024  # the paper: 4096
    support_size: int = 4096  # the paper: 98304 (see the docstring)
    sync_bn: bool = True


@METHODS.register("nnclr")
class NNCLR(TwoViewMethod):
    name = "nnclr"
    Config = NNCLRConfig
    sync_bn_modules = ("encoder", "projector", "predictor")

    queue: Tensor  # the support set Q: (support_size, projection_dim), unit rows
    queue_ptr: Tensor

    def __init__(self, config: NNCLRConfig, spec: DataSpec):
        super().__init__(config, spec, byol_views())  # asymmetric: one augmentation per view, as the paper's
        dim = config.projection_dim
        self.projector = mlp(self.encoder.feature_dim(), config.hidden_dim, dim, layers=3, last_batch_norm=True,
                             last_affine=True)
        self.predictor = mlp(dim, config.predictor_hidden_dim, dim, layers=2)
        self.register_buffer("queue", F.normalize(torch.randn(config.support_size, dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def nearest_neighbours(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """For each row of z (n, dim): the index of its nearest support-set item (largest cosine similarity,
        i.e. smallest distance between unit vectors) and that item (n, dim), which carries no gradient."""
        index = (F.normalize(z, dim=1) @ self.queue.T).argmax(1)  # (n, K) similarities; the queue rows are unit
        return index, self.queue[index]

    @torch.no_grad()
    def _dequeue_and_enqueue(self, z: Tensor) -> None:
        """The normalised embeddings of every process replace the oldest items of the support set."""
        enqueue(self.queue, self.queue_ptr, F.normalize(gather(z), dim=1), size_option="support_size")

    def contrast(self, neighbours: Tensor, predictions: Tensor) -> Tensor:
        """NNCLR's loss for this process's rows against the global batch (the identity gathers in one process)."""
        return nnclr_loss(neighbours, predictions, self.config.temperature, all_neighbours=gather(neighbours),
                          all_predictions=gather_with_grad(predictions), first=rank() * len(neighbours))

    def loss_from_views(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        self.sync_batchnorm_once(view1.device)
        # One encoder pass over both views: BatchNorm sees the 2N views together, as in SimCLR.
        z1, z2 = self.projector(self.encoder(torch.cat([view1, view2]))).chunk(2)
        p1, p2 = self.predictor(torch.cat([z1, z2])).chunk(2)
        _, nn1 = self.nearest_neighbours(z1)
        _, nn2 = self.nearest_neighbours(z2)
        # Symmetric over the views: the neighbour of view 1 against the predictions from view 2, and vice versa.
        loss = (self.contrast(nn1, p2) + self.contrast(nn2, p1)) / 2
        if self.training:
            self._dequeue_and_enqueue(z1)
        return loss, {"pretext_acc": own_prediction_is_nearest(nn1, p2.detach())}


def own_prediction_is_nearest(neighbours: Tensor, predictions: Tensor) -> Tensor:
    """Fraction of neighbours whose most similar prediction was made from their own image (top-1 of N)."""
    sim = F.normalize(neighbours, dim=1) @ F.normalize(predictions, dim=1).T
    return (sim.argmax(1) == torch.arange(len(neighbours), device=sim.device)).float().mean()
