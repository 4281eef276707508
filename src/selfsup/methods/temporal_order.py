"""Shuffle and Learn: predict whether a tuple of three frames is in temporal order (binary).

Misra, Zitnick & Hebert, "Shuffle and Learn: Unsupervised Learning using Temporal Order Verification",
ECCV 2016. From five frames a < b < c < d < e of a clip, a positive tuple is (b, c, d) (or its reverse
(d, c, b): the direction of time is not asked), a negative one puts a frame from outside the window in
the middle: (b, a, d) or (b, e, d) (or their reverses). The five frames are drawn where the clip moves
most (the paper samples windows of high optical-flow magnitude; we weight frames by their mean
absolute difference to the neighbouring frames). A quarter of the tuples are positive (the paper's
class-ratio ablation found 25% positives / 75% negatives best). As in the paper, a negative's outside
frame must look different from c (the paper rejects near-duplicates by SSD; we take whichever of a and e
differs from c by a mean absolute difference of at least `min_difference`), otherwise a "shuffled"
tuple could be pixel for pixel an ordered one. A siamese encoder embeds each frame, the three
embeddings are concatenated and a small classifier says "in order" (1) or not (0).

The encoder has BatchNorm after every conv by default, as the authors' CaffeNet ("our model requires Batch
Normalization", github.com/imisra/shuffle-tuple); without it, the one-seed benchmark run (400 steps) ended at
loss 0.562 = the entropy of the 25/75 class prior, pretext accuracy 0.75: the classifier had only learned the prior.

Deviations: frames come from 8-frame sprite clips (the paper: UCF101 at 227x227 with CaffeNet);
the five frames are any five of the clip's eight (the paper bounds the gaps between them in long videos);
frame differences stand in for optical-flow magnitude, and a mean absolute difference for the SSD test;
Adam 1e-3 instead of SGD; the classifier sees the encoder's pooled features, not fc7.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.losses.classification import cross_entropy_and_accuracy
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.views import to_float
from selfsup.views.frames import first_frame_if_clip


def _batch_norm_encoder() -> dict[str, Any]:
    return {"batch_norm": True}


@dataclass
class TemporalOrderConfig(MethodConfig):
    encoder_kwargs: dict[str, Any] = field(default_factory=_batch_norm_encoder)  # the authors' BatchNorm CaffeNet
    positive_fraction: float = 0.25  # the paper: 25% positives, 75% negatives (its class-ratio ablation)
    min_difference: float = 0.01  # a negative's outside frame differs from c by this mean |x| at least (paper: SSD)
    motion_weighting: bool = True  # prefer frames with large motion (the paper's high-flow windows)
    hidden_dim: int = 128  # classifier on the concatenated features (scaled down from fc8 on 3x4096)


def frame_motion(clips: Tensor) -> Tensor:
    """(N, T) how much each frame differs from its neighbours: mean |x_t - x_t-1| + mean |x_t+1 - x_t|."""
    step = (clips[:, 1:] - clips[:, :-1]).abs().flatten(2).mean(2)  # (N, T-1)
    pad = torch.zeros_like(step[:, :1])
    return torch.cat([pad, step], dim=1) + torch.cat([step, pad], dim=1)


def five_frames(clips: Tensor, generator: torch.Generator | None = None, motion_weighting: bool = True) -> Tensor:
    """(N, 5) sorted distinct frame indices a < b < c < d < e per clip, favouring high-motion frames.

    Gumbel-top-5 over log-weights draws five frames without replacement in one batched op.
    """
    n, t = clips.shape[:2]
    if t < 5:
        raise ValueError(f"temporal order verification needs clips of at least 5 frames, got {t}")
    scores = torch.zeros(n, t, device=clips.device)
    if motion_weighting:
        scores = frame_motion(clips).clamp_min(1e-6).log()
    uniform = torch.rand(n, t, generator=generator, device="cpu" if generator is not None else clips.device)
    gumbel = -torch.log(-torch.log(uniform.to(clips.device).clamp(1e-9, 1 - 1e-9)))
    return (scores + gumbel).topk(5, dim=1).indices.sort(dim=1).values


def differs(clips: Tensor, i: Tensor, j: Tensor, min_difference: float) -> Tensor:
    """(N,) bool: frame i of each clip differs from its frame j by a mean absolute difference >= min_difference."""
    rows = torch.arange(len(clips), device=clips.device)
    return (clips[rows, i] - clips[rows, j]).abs().flatten(1).mean(1) >= min_difference


def order_tuples(clips: Tensor, positive_fraction: float = 0.25, generator: torch.Generator | None = None,
                 motion_weighting: bool = True, min_difference: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """Tuples (N, 3, C, H, W), labels (N,) (1 = in order) and their frame indices (N, 3), one per clip.

    Exactly round(positive_fraction * N) tuples are positive. Negatives take a (before the window) or e
    (after it) as the middle frame, half each on average, but never one that looks like c (mean absolute
    difference below `min_difference`) when the other does not; half of all tuples are reversed.
    """
    n = len(clips)
    device = clips.device
    a, b, c, d, e = five_frames(clips, generator, motion_weighting).unbind(1)
    rand = lambda: torch.rand(n, generator=generator, device="cpu" if generator is not None else device).to(device)
    positive = torch.zeros(n, dtype=torch.bool, device=device)
    order = torch.randperm(n, generator=generator, device="cpu" if generator is not None else device).to(device)
    positive[order[:round(positive_fraction * n)]] = True
    a_differs, e_differs = differs(clips, a, c, min_difference), differs(clips, e, c, min_difference)
    take_a = torch.where(a_differs == e_differs, rand() < 0.5, a_differs)  # a coin flip only when both (or neither) differ
    outside = torch.where(take_a, a, e)
    middle = torch.where(positive, c, outside)
    index = torch.stack([b, middle, d], dim=1)
    index = torch.where((rand() < 0.5)[:, None], index.flip(1), index)
    tuples = clips[torch.arange(n, device=device)[:, None], index]
    return tuples, positive.long(), index


@METHODS.register("temporal-order")
class TemporalOrder(Method):
    name = "temporal-order"
    modality = "video"
    Config = TemporalOrderConfig
    default_data = "sprites"
    default_epochs = 10
    default_batch_size = 64

    def __init__(self, config: TemporalOrderConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.encoder = self.configured_encoder()
        dim = self.encoder.feature_dim()
        self.classifier = nn.Sequential(nn.Linear(3 * dim, config.hidden_dim), nn.ReLU(inplace=True),
                                        nn.Linear(config.hidden_dim, 2))

    def encoder_input(self, batch: Tensor) -> Tensor:
        """Floats in [0, 1] (x / 255); a clip batch gives its first frames (evaluation is frame by frame)."""
        return to_float(first_frame_if_clip(batch))

    def logits(self, tuples: Tensor) -> Tensor:
        """(N, 2) from (N, 3, C, H, W) float tuples; the three frames share the encoder (siamese)."""
        n = len(tuples)
        features = self.encoder(tuples.flatten(0, 1)).view(n, -1)  # concatenation in tuple order
        return self.classifier(features)

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        tuples, labels, _ = order_tuples(to_float(batch), self.config.positive_fraction,
                                         motion_weighting=self.config.motion_weighting,
                                         min_difference=self.config.min_difference)
        loss, accuracy = cross_entropy_and_accuracy(self.logits(tuples), labels)
        return loss, {"pretext_acc": accuracy}

    @torch.no_grad()
    def examples(self, batch: Tensor) -> dict[str, Tensor]:
        """Eight tuples as three rows (first, middle, last frame), with true and predicted order labels."""
        g = torch.Generator().manual_seed(0)
        tuples, labels, _ = order_tuples(to_float(batch[:8]), 0.5, generator=g,
                                         motion_weighting=self.config.motion_weighting)
        predicted = self.logits(tuples).argmax(1)
        return {"first": tuples[:, 0], "middle": tuples[:, 1], "last": tuples[:, 2],
                "in_order": labels, "predicted_in_order": predicted}
