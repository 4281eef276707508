"""CPC on frame sequences: predict the embeddings of frames 1..K steps ahead from a recurrent context.

van den Oord, Li & Vinyals, "Representation Learning with Contrastive Predictive Coding", 2018. Each
frame is encoded on its own (z_t = g_enc(x_t)), a GRU summarises z_<=t into a context c_t, and a linear
map W_k per step turns c_t into a prediction of z_t+k. The score of a candidate z is the bilinear
z^T W_k c_t (no normalisation, temperature 1); InfoNCE picks the true z_t+k among all other frames'
embeddings in the batch at that step (same clip at other times and other clips), as in the paper.

Deviations: 8-frame sprite clips with K = 3 steps (the paper's audio used 12 steps), a 64-d code and
64-d GRU (paper: 512 / 256), the convnet encoder per frame, Adam 1e-3 (paper: Adam 2e-4).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.losses.contrastive import info_nce
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.views import to_float
from selfsup.views.frames import first_frame_if_clip


@dataclass
class CPCSequenceConfig(MethodConfig):
    code_dim: int = 64  # z_t; paper 512 (scaled down for 2 CPU cores)
    context_dim: int = 64  # c_t; paper 256 (scaled down)
    steps: int = 3  # predict 1..K frames ahead; paper 12 audio steps (our clips have 8 frames)


def future_pairs(codes: Tensor, contexts: Tensor, step: int) -> tuple[Tensor, Tensor]:
    """Contexts c_t and targets z_t+step for every clip and every t with t + step < T, flattened.

    Returns (N * (T - step), D_c) contexts and (N * (T - step), D_z) targets, row-aligned.
    """
    return contexts[:, :-step].flatten(0, 1), codes[:, step:].flatten(0, 1)


@METHODS.register("cpc-sequence")
class CPCSequence(Method):
    name = "cpc-sequence"
    modality = "video"
    Config = CPCSequenceConfig
    default_data = "sprites"
    default_epochs = 10
    default_batch_size = 32

    def __init__(self, config: CPCSequenceConfig, spec: DataSpec):
        super().__init__(config, spec)
        if spec.frames and config.steps >= spec.frames:
            raise ValueError(f"cannot predict {config.steps} steps ahead in clips of {spec.frames} frames")
        self.encoder = self.configured_encoder()
        self.to_code = nn.Linear(self.encoder.feature_dim(), config.code_dim)
        self.context = nn.GRU(config.code_dim, config.context_dim, batch_first=True)
        self.predictors = nn.ModuleList(nn.Linear(config.context_dim, config.code_dim, bias=False)
                                        for _ in range(config.steps))  # W_k, one per step ahead

    def encoder_input(self, batch: Tensor) -> Tensor:
        """Floats in [0, 1] (x / 255); a clip batch gives its first frames (evaluation is frame by frame)."""
        return to_float(first_frame_if_clip(batch))

    def codes_and_contexts(self, clips: Tensor) -> tuple[Tensor, Tensor]:
        """z (N, T, code_dim) per frame and the causal GRU contexts c (N, T, context_dim)."""
        n, t = clips.shape[:2]
        codes = self.to_code(self.encoder(clips.flatten(0, 1))).view(n, t, -1)
        contexts, _ = self.context(codes)
        return codes, contexts

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        codes, contexts = self.codes_and_contexts(to_float(batch))
        losses, correct = [], []
        for k, predictor in enumerate(self.predictors, start=1):  # K steps, each a whole-batch InfoNCE
            context, target = future_pairs(codes, contexts, k)
            prediction = predictor(context)
            losses.append(info_nce(prediction, target, temperature=1.0, normalize=False))
            scores = prediction @ target.T
            correct.append((scores.argmax(1) == torch.arange(len(scores), device=scores.device)).float().mean())
        return torch.stack(losses).mean(), {"pretext_acc": torch.stack(correct).mean(),
                                            "pretext_acc_1step": correct[0]}

    @torch.no_grad()
    def examples(self, batch: Tensor) -> dict[str, Tensor]:
        """Eight clips' frames 0, 1 and 2, and for frame 1 the batch position its 1-step-ahead prediction picked."""
        clips = to_float(batch[:8])
        codes, contexts = self.codes_and_contexts(clips)
        scores = self.predictors[0](contexts[:, 0]) @ codes[:, 1].T  # (8, 8): clip i's guess among frames 1
        return {"frame_0": clips[:, 0], "frame_1": clips[:, 1], "frame_2": clips[:, 2],
                "true_clip": torch.arange(len(clips)), "picked_clip": scores.argmax(1)}
