"""Hyperparameters chosen on a validation split carved from the labeled budget, never on the test set.

Every protocol with something to tune (the linear probe, kNN, fine-tuning and the supervised baseline)
goes through `choose_on_validation`: the labeled budget is split, stratified and seeded, into a part to
fit and a validation part; each grid point is fitted on the first and scored on the second; the winner
is then refitted on the whole budget and scored once on the test set by the caller. Fine-tuning and the
supervised baseline share one grid, so neither side gets more tuning than the other.

At tiny budgets one split is a noisy judge: at 10 labels per class it holds 2 items per class, and the method
table's ViT fine-tuning chose lr 1e-2 there, 5-7 test points below a smaller lr. `folds` > 1 scores each grid
point by stratified k-fold cross-validation instead (each labeled item is validated once, the grid point's
score is the mean over folds), at `folds` times the cost. The default stays one split.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from selfsup.errors import SelfSupError

# Small grids, sized so a whole method table stays affordable on 2 CPU cores (see benchmarks/methods.py).
LINEAR_GRID = [{"lr": lr, "weight_decay": wd} for lr in (1e-3, 1e-2) for wd in (0.0, 1e-3, 1e-2)]
KNN_GRID = [{"k": k} for k in (10, 50, 200)]
# The fine-tuning / supervised lrs reach 3e-2: with the top at 3e-3 it won 213 of 306 choices in the method table,
# and encoders without BatchNorm (RotNet's ConvNet, CPC's patch encoder) trained from random init underfit there
# (benchmarks/results/baseline_fit.md: 77.0% held-out at 3e-3 against 80.5% at 1e-2), which flattered SSL rows.
FINETUNE_GRID = [{"lr": lr, "weight_decay": wd} for lr in (3e-4, 1e-3, 3e-3, 1e-2, 3e-2) for wd in (0.0, 5e-4)]
GRIDS = {"linear": LINEAR_GRID, "knn": KNN_GRID, "finetune": FINETUNE_GRID, "supervised": FINETUNE_GRID}
# `augment="validation"` in the fine-tuning options: light augmentation on or off becomes one more grid axis.
AUGMENT_ON_VALIDATION = "validation"


def with_augment_choice(grid: list[dict], options: dict) -> tuple[list[dict], dict]:
    """(grid, options) for fine-tuning or the supervised baseline. With `augment="validation"` in `options`,
    each grid point is tried with the light augmentation on and off, so validation picks it as it picks the
    lr: at small step budgets augmentation can cost a network points, and neither side should be stuck with
    it. Points that already fix `augment` (chosen earlier on another draw) are kept as they are."""
    if options.get("augment") != AUGMENT_ON_VALIDATION:
        return grid, options
    rest = {k: v for k, v in options.items() if k != "augment"}
    expanded = []
    for point in grid:
        expanded += [point] if "augment" in point else [point | {"augment": on} for on in (True, False)]
    return expanded, rest


def validation_split(labels: Tensor, fraction: float = 0.2, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(fit index, validation index) into `labels`: `fraction` of each class for validation, rounded, but
    at least one item per class on each side. Raises when a class has a single item (nothing to hold out)."""
    g = torch.Generator().manual_seed(10_007 + seed)  # independent of the label draw's generator
    fit, held = [], []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        if len(members) < 2:
            raise SelfSupError(f"class {c} has {len(members)} labeled example: tuning on a validation split needs "
                               f"at least 2 per class (raise --labels-per-class, or turn tuning off)")
        members = members[torch.randperm(len(members), generator=g)]
        n_held = min(len(members) - 1, max(1, round(fraction * len(members))))
        held.append(members[:n_held])
        fit.append(members[n_held:])
    return torch.cat(fit), torch.cat(held)


def validation_folds(labels: Tensor, folds: int, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    """Stratified k-fold: `folds` (fit index, validation index) pairs into `labels`. Each class's items are
    shuffled and dealt round-robin to the folds, so every item is validated exactly once and each fold's
    validation part has the same class balance (to within one item). Needs `folds` items of each class."""
    if folds < 2:
        raise SelfSupError(f"k-fold validation needs at least 2 folds, got {folds}")
    g = torch.Generator().manual_seed(20_011 + seed)  # independent of the label draw's and the split's generators
    fold_of = torch.empty(len(labels), dtype=torch.long)
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        if len(members) < folds:
            raise SelfSupError(f"class {c} has {len(members)} labeled examples: {folds}-fold validation needs at least "
                               f"{folds} per class (use fewer folds or more labels per class)")
        members = members[torch.randperm(len(members), generator=g)]
        fold_of[members] = torch.arange(len(members)) % folds
    return [(torch.nonzero(fold_of != k).flatten(), torch.nonzero(fold_of == k).flatten()) for k in range(folds)]


def choose_on_validation(grid: list[dict], labels: Tensor, fit_and_score: Callable[[Tensor, Tensor, dict], float],
                         seed: int = 0, fraction: float = 0.2, folds: int = 1) -> tuple[dict, list[dict]]:
    """The grid point with the best validation accuracy (the first one on ties) and every trial.

    `fit_and_score(fit_index, validation_index, params)` fits on `labels[fit_index]`'s items with `params`
    and returns the accuracy on the validation items. A one-point grid is returned without fitting. With
    `folds` > 1 a point's validation accuracy is its mean over stratified folds (`validation_folds`; each
    trial also keeps the per-fold accuracies) instead of one split of `fraction`.
    """
    if len(grid) == 1:
        return dict(grid[0]), []
    splits = [validation_split(labels, fraction, seed)] if folds == 1 else validation_folds(labels, folds, seed)
    trials = []
    for p in grid:
        accs = [fit_and_score(fit, val, p) for fit, val in splits]
        trials.append({"params": dict(p), "val_acc": sum(accs) / len(accs)} | ({"fold_accs": accs} if folds > 1 else {}))
    best = max(trials, key=lambda t: t["val_acc"])  # max keeps the first of equal scores
    return best["params"], trials
