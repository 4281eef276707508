"""Deep metric-learning losses: pull same-class embeddings together, push other classes apart.

Each function takes embeddings (and labels or pair flags), returns a scalar, and works on the batch's
device with whole-batch tensor ops. Distances are Euclidean; `squared` says whether they are squared.

- `contrastive_loss`: Chopra, Hadsell & LeCun, "Learning a Similarity Metric Discriminatively, with
  Application to Face Verification", CVPR 2005; in the margin form of Hadsell, Chopra & LeCun,
  "Dimensionality Reduction by Learning an Invariant Mapping", CVPR 2006.
- `triplet_loss`, `batch_triplet_loss`: Schroff, Kalenichenko & Philbin, "FaceNet", CVPR 2015;
  batch-all / batch-hard mining as in Hermans, Beyer & Leibe, "In Defense of the Triplet Loss", 2017.
- `lifted_structured_loss`: Song, Xiang, Jegelka & Savarese, "Deep Metric Learning via Lifted
  Structured Feature Embedding", CVPR 2016.
- `n_pair_loss`: Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective",
  NeurIPS 2016.
- `soft_nearest_neighbor_loss`: Frosst, Papernot & Hinton, "Analyzing and Improving Representations
  with the Soft Nearest Neighbor Loss", ICML 2019.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.errors import SelfSupError


def pairwise_distances(x: Tensor, y: Tensor | None = None, squared: bool = False) -> Tensor:
    """Euclidean distances between the rows of `x` (N, D) and `y` (M, D) (default `x`): (N, M)."""
    y = x if y is None else y
    squared_distances = (x.unsqueeze(1) - y.unsqueeze(0)).pow(2).sum(-1)
    return squared_distances if squared else _zero_safe_sqrt(squared_distances)


def contrastive_loss(x1: Tensor, x2: Tensor, similar: Tensor, margin: float = 1.0) -> Tensor:
    """Margin contrastive loss over pairs (x1_i, x2_i), `similar` (N,) bool; D is Euclidean distance.

        L = 1/N sum_i [ s_i * 1/2 D_i^2 + (1 - s_i) * 1/2 max(0, margin - D_i)^2 ]

    Similar pairs are pulled together; dissimilar pairs are pushed out to at least `margin`.
    """
    _check_same_shape(x1, x2, "x1", "x2")
    _check_labels(similar, len(x1), "similar")
    distance = _row_distances(x1, x2)
    similar = similar.to(distance.dtype)
    per_pair = similar * 0.5 * distance.pow(2) + (1 - similar) * 0.5 * F.relu(margin - distance).pow(2)
    return per_pair.mean()


def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 0.2,
                 squared: bool = True) -> Tensor:
    """FaceNet triplet loss over given triplets: 1/N sum_i max(0, D(a_i, p_i) - D(a_i, n_i) + margin).

    FaceNet uses squared distances between L2-normalised embeddings and margin 0.2 (its defaults here);
    normalising is the caller's choice.
    """
    _check_same_shape(anchor, positive, "anchor", "positive")
    _check_same_shape(anchor, negative, "anchor", "negative")
    d_pos = _row_distances(anchor, positive, squared)
    d_neg = _row_distances(anchor, negative, squared)
    return F.relu(d_pos - d_neg + margin).mean()


def batch_triplet_loss(embeddings: Tensor, labels: Tensor, margin: float = 0.2, mining: str = "all",
                       squared: bool = True) -> Tensor:
    """Triplet loss mined from a labelled batch `embeddings` (N, D), `labels` (N,).

    mining="all": every valid triplet (a, p, n) with a != p, y_a = y_p != y_n; the hinge is averaged
        over the active triplets (those with a positive loss), so easy triplets do not dilute it.
    mining="hard": per anchor, its farthest positive and its nearest negative; averaged over anchors
        that have both.
    Returns 0 (still attached to the graph) when the batch has no valid triplet.
    """
    _check_labels(labels, len(embeddings), "labels")
    distances = pairwise_distances(embeddings, squared=squared)
    same, different = _label_masks(labels)
    if mining == "all":
        # hinge[a, p, n] = D(a, p) - D(a, n) + margin, kept where (a, p) positive and (a, n) negative.
        hinge = distances.unsqueeze(2) - distances.unsqueeze(1) + margin
        valid = same.unsqueeze(2) & different.unsqueeze(1)
        losses = F.relu(hinge[valid])
        active = losses > 0
        return losses[active].mean() if active.any() else embeddings.sum() * 0.0
    if mining == "hard":
        hardest_positive = distances.masked_fill(~same, float("-inf")).amax(1)
        hardest_negative = distances.masked_fill(~different, float("inf")).amin(1)
        has_both = same.any(1) & different.any(1)
        if not has_both.any():
            return embeddings.sum() * 0.0
        return F.relu(hardest_positive[has_both] - hardest_negative[has_both] + margin).mean()
    raise SelfSupError(f"unknown triplet mining {mining!r}; use 'all' or 'hard'")


def lifted_structured_loss(embeddings: Tensor, labels: Tensor, margin: float = 1.0) -> Tensor:
    """Lifted structured loss over every positive pair of a labelled batch; D is Euclidean distance.

        J_ij = log( sum_{k: y_k != y_i} exp(margin - D_ik) + sum_{l: y_l != y_j} exp(margin - D_jl) ) + D_ij
        L = 1 / (2|P|) sum_{(i, j) in P} max(0, J_ij)^2,   P = unordered same-class pairs i < j

    Returns 0 (attached to the graph) when the batch has no positive pair or no negative pair.
    """
    _check_labels(labels, len(embeddings), "labels")
    distances = pairwise_distances(embeddings)
    same, different = _label_masks(labels)
    positive_pairs = torch.triu(same, diagonal=1)
    if not positive_pairs.any() or not different.any():
        return embeddings.sum() * 0.0
    # log sum over each point's negatives; a point with no negative contributes exp(-inf) = 0.
    negative_terms = (margin - distances).masked_fill(~different, float("-inf"))
    log_negatives = torch.logsumexp(negative_terms, dim=1)  # (N,)
    i, j = positive_pairs.nonzero(as_tuple=True)
    j_ij = torch.logaddexp(log_negatives[i], log_negatives[j]) + distances[i, j]
    return F.relu(j_ij).pow(2).sum() / (2 * len(i))


def n_pair_loss(anchors: Tensor, positives: Tensor, l2_reg: float = 0.002) -> Tensor:
    """Multi-class N-pair loss: N (anchor, positive) pairs from N distinct classes, dot products.

        L = 1/N sum_i log(1 + sum_{j != i} exp(f_i . f+_j - f_i . f+_i)) + l2_reg * mean ||f||^2

    i.e. cross-entropy of row i of (f . f+^T) with target i; the mean squared norm runs over all 2N
    embeddings (the paper regularises embedding norms instead of normalising them; 0.002 as in its
    public implementation).
    """
    _check_same_shape(anchors, positives, "anchors", "positives")
    logits = anchors @ positives.T
    classification = F.cross_entropy(logits, torch.arange(len(anchors), device=anchors.device))
    squared_norms = torch.cat([anchors, positives]).pow(2).sum(1)
    return classification + l2_reg * squared_norms.mean()


def soft_nearest_neighbor_loss(embeddings: Tensor, labels: Tensor, temperature: float = 1.0) -> Tensor:
    """Soft nearest neighbour loss: how entangled the classes are, with squared Euclidean distances.

        L = -1/b sum_i log( sum_{j != i, y_j = y_i} exp(-D_ij^2 / T) / sum_{k != i} exp(-D_ik^2 / T) )

    Anchors without a same-class partner are left out of the mean (their term would be log 0).
    """
    _check_labels(labels, len(embeddings), "labels")
    logits = -pairwise_distances(embeddings, squared=True) / temperature
    same, _ = _label_masks(labels)
    has_partner = same.any(1)
    if not has_partner.any():
        raise SelfSupError("soft nearest neighbour loss needs at least two points of one class")
    logits, same = logits[has_partner], same[has_partner]
    not_self = ~F.one_hot(has_partner.nonzero(as_tuple=True)[0], len(labels)).bool()
    log_same = torch.logsumexp(logits.masked_fill(~same, float("-inf")), dim=1)
    log_all = torch.logsumexp(logits.masked_fill(~not_self, float("-inf")), dim=1)
    return (log_all - log_same).mean()


# --- helpers ---------------------------------------------------------------------------------------
def _row_distances(a: Tensor, b: Tensor, squared: bool = False) -> Tensor:
    """Distance between a_i and b_i for each row i: (N,)."""
    squared_distances = (a - b).pow(2).sum(-1)
    return squared_distances if squared else _zero_safe_sqrt(squared_distances)


def _zero_safe_sqrt(squared_distances: Tensor) -> Tensor:
    """sqrt with gradient 0 instead of inf/nan at 0 (e.g. each point's distance to itself)."""
    positive = squared_distances > 0
    safe = torch.where(positive, squared_distances, torch.ones_like(squared_distances))
    return torch.where(positive, safe.sqrt(), torch.zeros_like(squared_distances))


def _label_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(same, different): same[i, j] for y_i = y_j with i != j; different[i, j] for y_i != y_j."""
    equal = labels.unsqueeze(0) == labels.unsqueeze(1)
    not_self = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return equal & not_self, ~equal


def _check_same_shape(a: Tensor, b: Tensor, a_name: str, b_name: str) -> None:
    if a.dim() != 2 or a.shape != b.shape:
        raise SelfSupError(f"{a_name} and {b_name} must both be (N, D) of the same shape, "
                           f"got {tuple(a.shape)} and {tuple(b.shape)}")


def _check_labels(labels: Tensor, n: int, name: str) -> None:
    if labels.dim() != 1 or len(labels) != n:
        raise SelfSupError(f"{name} must be a 1-D tensor with one entry per embedding ({n}), "
                           f"got shape {tuple(labels.shape)}")
