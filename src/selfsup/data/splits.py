"""Seeded, stratified splits: an unlabeled pretraining pool, a labeled budget and a test set."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from typing import Any

from selfsup.errors import SelfSupError


@dataclass
class Splits:
    pool: Any  # unlabeled pretraining images (labels kept only for monitoring, e.g. online kNN)
    labeled: Any  # the label budget
    test: Any  # all three are data objects of the same type (ImageData, text, video...)


def stratified_take(labels: Tensor, per_class: int | None = None, fraction: float | None = None,
                    generator: torch.Generator | None = None, exclude: Tensor | None = None) -> Tensor:
    """Indices of `per_class` examples of every class (or `fraction` of each class), drawn at random.

    `exclude` (bool mask) removes indices from the candidates. Raises SelfSupError when a class has
    fewer candidates than asked for.
    """
    if (per_class is None) == (fraction is None):
        raise SelfSupError("give exactly one of labels-per-class or label-fraction")
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise SelfSupError(f"label fraction must be in (0, 1], got {fraction}")
    if per_class is not None and per_class < 1:
        raise SelfSupError(f"labels per class must be at least 1, got {per_class}")
    available = torch.ones(len(labels), dtype=torch.bool) if exclude is None else ~exclude
    chosen = []
    for c in torch.unique(labels).tolist():
        candidates = torch.nonzero((labels == c) & available).flatten()
        want = per_class if per_class is not None else max(1, round(fraction * len(candidates)))
        if want > len(candidates):
            raise SelfSupError(
                f"label budget of {want} per class is larger than the {len(candidates)} examples of class {c} "
                f"available; lower --labels-per-class (at most {len(candidates)} here)")
        chosen.append(candidates[torch.randperm(len(candidates), generator=generator)[:want]])
    index = torch.cat(chosen)
    return index[torch.randperm(len(index), generator=generator)]


def make_splits(train: Any, test: Any | None, *, labels_per_class: int | None = None,
                label_fraction: float | None = None, pool_size: int | None = None,
                test_per_class: int = 100, seed: int = 0) -> Splits:
    """Split a source into (pool, labeled, test), all disjoint, stratified and reproducible from `seed`.

    The labeled budget is drawn first, stratified; the unlabeled pool is drawn from what is left
    (all of it when `pool_size` is None). When the source has no test split, `test_per_class`
    examples of each class are carved out before anything else.
    """
    if train.labels is None:
        raise SelfSupError(f"{train.name} has no labels, so it cannot provide a labeled budget or a test set")
    g = torch.Generator().manual_seed(seed)
    used = torch.zeros(len(train), dtype=torch.bool)
    if test is None:
        test_index = stratified_take(train.labels, per_class=test_per_class, generator=g)
        used[test_index] = True
        test = train.subset(test_index, name=f"{train.name}-test")
    labeled_index = stratified_take(train.labels, labels_per_class, label_fraction, generator=g, exclude=used)
    used[labeled_index] = True
    rest = torch.nonzero(~used).flatten()
    rest = rest[torch.randperm(len(rest), generator=g)]
    if pool_size is not None:
        if pool_size > len(rest):
            raise SelfSupError(f"pool of {pool_size} images asked for, but only {len(rest)} remain after the "
                               f"labeled and test sets; lower --pool-size")
        rest = rest[:pool_size]
    return Splits(pool=train.subset(rest, name=f"{train.name}-pool"),
                  labeled=train.subset(labeled_index, name=f"{train.name}-labeled"), test=test)
