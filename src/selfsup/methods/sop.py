"""SOP: predict whether two consecutive segments are in their original order or swapped (ALBERT).

Lan, Chen, Goodman, Gimpel, Sharma & Soricut, "ALBERT: A Lite BERT for Self-supervised Learning of
Language Representations", ICLR 2020. Kept from the paper: positives are two consecutive segments of
one document in order (label 1), negatives the same two segments swapped (label 0), 50% each, so the
task is about discourse order and not topic (NSP's shortcut); the same [CLS] pooler+classifier as NSP.
Deviations: the two segments are the halves of one fortune's first 2S subwords; exactly half of each
batch is in order; ALBERT's parameter sharing and factorised embeddings are not used (same encoder as BERT).
"""
from __future__ import annotations

import torch
from torch import Tensor

from selfsup.methods.base import METHODS
from selfsup.methods.nsp import NSP, build_pairs, half_positive


def sop_pairs(segments: Tensor, lengths: Tensor,
              generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Tensor]:
    """(A, B) for label 1 and (B, A) for label 0, A and B consecutive segments of the same document."""
    in_order = half_positive(len(segments), segments.device, generator)
    keep = in_order[:, None]
    first = torch.where(keep, segments[:, 0], segments[:, 1])
    second = torch.where(keep, segments[:, 1], segments[:, 0])
    first_len = torch.where(in_order, lengths[:, 0], lengths[:, 1])
    second_len = torch.where(in_order, lengths[:, 1], lengths[:, 0])
    return build_pairs(first, first_len, second, second_len), in_order.long()


@METHODS.register("sop")
class SOP(NSP):
    name = "sop"

    def make_pairs(self, batch: dict[str, Tensor],
                   generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Tensor]:
        return sop_pairs(batch["segments"], batch["segment_lengths"], generator)
