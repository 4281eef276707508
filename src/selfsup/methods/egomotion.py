"""Ego-motion equivariance: predict the features of the view after a camera move from the view before it.

Jayaraman & Grauman, "Learning Image Representations Tied to Ego-Motion", ICCV 2015. For each discrete
motion class g the model learns a linear map M_g so that z(g.x) ~ M_g z(x) for the views x, g.x before
and after an agent's move; a contrastive (DrLIM) loss pulls matched pairs together and pushes
mismatched ones at least `margin` apart:

    d(x, y) = || M_g z(x) - z(y) ||_2
    L = mean over pairs of  d(x, g.x)^2  +  max(0, margin - d(x, y'))^2

where y' is the after-view of another pair in the batch (a mismatched pair). "egomotion-invariant" is
the paper's slow-feature (temporal coherence) baseline: M_g = identity for every g.

Deviations: unsupervised only (the paper also adds a softmax classification loss on a labelled set);
6 motion classes of a simulated agent (the paper: KITTI car motions clustered into motion patterns such as
left turn, right turn, zoom, and NORB/SUN viewpoint changes); z is a 64-d linear projection of the convnet
features (the paper: a fully connected layer of its CNN); Adam 1e-3.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.losses.precision import float32
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.views import to_float
from selfsup.views.frames import first_frame_if_clip


@dataclass
class EgomotionConfig(MethodConfig):
    embed_dim: int = 64  # z dimension (ours; scaled for 28x28 inputs)
    margin: float = 1.0  # DrLIM margin for mismatched pairs
    equivariant: bool = True  # False: the invariance-only (slowness) baseline, M_g = I


@float32  # squared distances against a margin: computed in fp32 under mixed precision
def equivariance_loss(z: Tensor, z_moved: Tensor, motion: Tensor, maps: Tensor, margin: float) -> Tensor:
    """Contrastive equivariance loss of `z` (N, D) before and `z_moved` (N, D) after motions `motion` (N,)
    with one map per class `maps` (G, D, D); mismatched pairs pair z_i with z_moved of row i+1 (mod N)."""
    predicted = (maps[motion] @ z.unsqueeze(-1)).squeeze(-1)  # M_g z(x), (N, D)
    matched = (predicted - z_moved).pow(2).sum(-1)
    mismatched = (predicted - z_moved.roll(-1, dims=0)).norm(dim=-1)
    return (matched + (margin - mismatched).clamp_min(0).pow(2)).mean()


@METHODS.register("egomotion")
class Egomotion(Method):
    name = "egomotion"
    modality = "video"
    Config = EgomotionConfig
    default_data = "egomotion"
    default_epochs = 5
    default_batch_size = 128

    def __init__(self, config: EgomotionConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.encoder = self.configured_encoder()
        self.project = nn.Linear(self.encoder.feature_dim(), config.embed_dim)
        motions = len(spec.extra.get("motions", range(6)))
        eye = torch.eye(config.embed_dim).expand(motions, -1, -1).clone()
        # Starting every M_g at the identity makes the untrained model the invariant one.
        self.maps = nn.Parameter(eye, requires_grad=config.equivariant)

    def encoder_input(self, batch: Tensor | dict[str, Tensor]) -> Tensor:
        """Images pass through; a pair batch (dict or (N, 2, C, H, W)) gives its before-views."""
        if isinstance(batch, dict):
            batch = batch["frames"]
        return to_float(first_frame_if_clip(batch))

    def embed(self, images: Tensor) -> Tensor:
        return self.project(self.encoder(images))

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        frames = to_float(batch["frames"])
        n = len(frames)
        z = self.embed(frames.transpose(0, 1).flatten(0, 1))  # before-views then after-views, one pass
        z, z_moved = z[:n], z[n:]
        loss = equivariance_loss(z, z_moved, batch["motion"], self.maps, self.config.margin)
        return loss, {"retrieval_acc": self._retrieval_accuracy(z, z_moved, batch["motion"])}

    @torch.no_grad()
    def _retrieval_accuracy(self, z: Tensor, z_moved: Tensor, motion: Tensor) -> Tensor:
        """How often M_g z(x) is nearest to its own after-view among the batch's after-views."""
        predicted = (self.maps[motion] @ z.unsqueeze(-1)).squeeze(-1)
        nearest = torch.cdist(predicted, z_moved).argmin(dim=1)
        return (nearest == torch.arange(len(z), device=z.device)).float().mean()

    @torch.no_grad()
    def examples(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Eight pairs (before, after) with their motion class and the after-view M_g z(x) retrieves."""
        frames = to_float(batch["frames"][:8])
        z, z_moved = self.embed(frames[:, 0]), self.embed(frames[:, 1])
        predicted = (self.maps[batch["motion"][:8]] @ z.unsqueeze(-1)).squeeze(-1)
        return {"before": frames[:, 0], "after": frames[:, 1], "motion": batch["motion"][:8],
                "retrieved_pair": torch.cdist(predicted, z_moved).argmin(dim=1)}


@dataclass
class EgomotionInvariantConfig(EgomotionConfig):
    equivariant: bool = False  # z(g.x) ~ z(x): the paper's temporal-coherence (slow feature) baseline


@METHODS.register("egomotion-invariant")
class EgomotionInvariant(Egomotion):
    name = "egomotion-invariant"
    Config = EgomotionInvariantConfig
