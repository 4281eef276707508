"""InfoNCE and NT-Xent: classify the positive key among negatives with a softmax over similarities.

InfoNCE (van den Oord, Li & Vinyals, "Representation Learning with Contrastive Predictive Coding",
2018; with the temperature and L2-normalised keys of Wu et al. 2018 and He et al., MoCo, 2020):

    L = -1/N sum_i log( exp(q_i.k_i+ / t) / (exp(q_i.k_i+ / t) + sum_k exp(q_i.k_k- / t)) )

NT-Xent (Chen, Kornblith, Norouzi & Hinton, "A Simple Framework for Contrastive Learning of Visual
Representations", SimCLR, 2020): the 2N views of N images, each anchor's positive is the other view of
its image and its 2N-2 negatives are all other views; cosine similarity over temperature t:

    l(i, j) = -log( exp(sim(z_i, z_j) / t) / sum_{k != i} exp(sim(z_i, z_k) / t) )
    L = 1/(2N) sum_{n=1..N} [ l(2n-1, 2n) + l(2n, 2n-1) ]
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.errors import SelfSupError
from selfsup.losses.precision import float32


@float32
def info_nce(query: Tensor, positive: Tensor, negatives: Tensor | None = None, temperature: float = 0.07,
             normalize: bool = True) -> Tensor:
    """InfoNCE of `query` (N, D) against its `positive` (N, D) key and `negatives`.

    `negatives` is (K, D) shared by every query (a MoCo queue), (N, K, D) per query, or None: then the
    other rows' positives are the negatives (N-1 each, as in CLIP / in-batch negatives). The positive is
    class 0 of an (N, 1+K) logit matrix; `normalize` L2-normalises all vectors first (cosine similarity).
    """
    _check_pair(query, positive, "query", "positive")
    if normalize:
        query, positive = F.normalize(query, dim=-1), F.normalize(positive, dim=-1)
        negatives = None if negatives is None else F.normalize(negatives, dim=-1)
    if negatives is None:
        # Row i's positive sits on the diagonal; the cross-entropy over the full row equals class-0
        # InfoNCE with the N-1 off-diagonal keys as negatives, without building a reordered matrix.
        logits = query @ positive.T / temperature
        return F.cross_entropy(logits, torch.arange(len(query), device=query.device))
    positive_logit = (query * positive).sum(-1, keepdim=True)  # (N, 1)
    if negatives.dim() == 2:
        negative_logits = query @ negatives.T  # (N, K)
    elif negatives.dim() == 3 and negatives.shape[0] == query.shape[0]:
        negative_logits = torch.einsum("nd,nkd->nk", query, negatives)
    else:
        raise SelfSupError(f"negatives must be (K, D) or (N, K, D) with N={query.shape[0]}, "
                           f"got shape {tuple(negatives.shape)}")
    if negatives.shape[-1] != query.shape[-1]:
        raise SelfSupError(f"negatives have dimension {negatives.shape[-1]}, queries {query.shape[-1]}")
    logits = torch.cat([positive_logit, negative_logits], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(query), dtype=torch.long, device=query.device))


@float32
def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """SimCLR's NT-Xent over the 2N views `z1` (N, D) and `z2` (N, D), averaged over all 2N anchors."""
    _check_pair(z1, z2, "z1", "z2")
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, D); view i's partner is i+N (mod 2N)
    logits = z @ z.T / temperature
    # An anchor is never its own negative: removing the diagonal leaves 1 positive + 2N-2 negatives.
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    partner = torch.arange(2 * n, device=z.device).roll(n)
    return F.cross_entropy(logits, partner)


def _check_pair(a: Tensor, b: Tensor, a_name: str, b_name: str) -> None:
    if a.dim() != 2 or a.shape != b.shape:
        raise SelfSupError(f"{a_name} and {b_name} must both be (N, D) of the same shape, "
                           f"got {tuple(a.shape)} and {tuple(b.shape)}")
