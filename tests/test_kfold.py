"""k-fold tuning: at a few labels per class one validation split holds 2 items per class, so `folds` > 1
scores each grid point by stratified cross-validation of the whole labeled budget instead."""
import importlib

import pytest
import torch

from selfsup.errors import SelfSupError
from selfsup.evaluate.budgets import evaluate_protocols
from selfsup.evaluate.tuning import GRIDS, choose_on_validation, validation_folds, validation_split
from selfsup.methods import build_method
from conftest import TINY, synthetic_images

budgets = importlib.import_module("selfsup.evaluate.budgets")


def test_validation_folds_validate_every_item_once_with_the_budgets_class_balance():
    labels = torch.arange(50) % 5  # 10 per class
    splits = validation_folds(labels, folds=5, seed=0)
    assert len(splits) == 5
    validated = torch.cat([val for _, val in splits])
    assert sorted(validated.tolist()) == list(range(50))  # each item validated exactly once
    for fit, val in splits:
        assert not set(fit.tolist()) & set(val.tolist()) and len(fit) + len(val) == 50
        assert torch.bincount(labels[val], minlength=5).tolist() == [2] * 5
    assert [v.tolist() for _, v in validation_folds(labels, 5, seed=1)] != [v.tolist() for _, v in splits]
    uneven = torch.tensor([0] * 7 + [1] * 3)
    sizes = [torch.bincount(uneven[val], minlength=2).tolist() for _, val in validation_folds(uneven, 3)]
    assert sorted(s[0] for s in sizes) == [2, 2, 3] and [s[1] for s in sizes] == [1, 1, 1]


def test_validation_folds_need_as_many_items_of_each_class_as_folds():
    with pytest.raises(SelfSupError, match="3-fold validation needs at least 3 per class"):
        validation_folds(torch.tensor([0, 0, 0, 1, 1]), folds=3)
    with pytest.raises(SelfSupError, match="at least 2 folds"):
        validation_folds(torch.tensor([0, 0, 1, 1]), folds=1)


def test_k_fold_scores_each_grid_point_by_its_mean_over_the_folds():
    labels = torch.arange(40) % 4
    calls = []

    def fit_and_score(fit, val, p):  # point "b" wins only on validation parts holding item 0
        calls.append((p["name"], fit, val))
        return {"a": 0.6, "b": 0.9 if 0 in val.tolist() else 0.5}[p["name"]]

    grid = [{"name": "a"}, {"name": "b"}]
    best, trials = choose_on_validation(grid, labels, fit_and_score, seed=0, folds=4)
    assert len(calls) == 8 and [c[0] for c in calls] == ["a"] * 4 + ["b"] * 4
    assert all(not set(fit.tolist()) & set(val.tolist()) for _, fit, val in calls)
    assert sorted(trials[1]["fold_accs"]) == [0.5, 0.5, 0.5, 0.9]
    assert trials[1]["val_acc"] == pytest.approx((0.9 + 3 * 0.5) / 4) and trials[0]["val_acc"] == pytest.approx(0.6)
    assert best == {"name": "a"}  # one fold's 0.9 does not outweigh three folds' 0.5


def test_one_fold_is_the_single_validation_split_as_before():
    labels = torch.arange(40) % 4
    seen = []
    best, trials = choose_on_validation([{"x": 1}, {"x": 2}], labels,
                                        lambda fit, val, p: seen.append((fit, val)) or p["x"] / 10, seed=3)
    fit, val = validation_split(labels, 0.2, 3)
    assert all(torch.equal(f, fit) and torch.equal(v, val) for f, v in seen) and len(seen) == 2
    assert best == {"x": 2} and all("fold_accs" not in t for t in trials)


def test_every_protocol_of_a_draw_is_tuned_over_the_folds(monkeypatch):
    data = synthetic_images(n=120, classes=4)
    labeled, test = data.subset(torch.arange(80)), data.subset(torch.arange(80, 120))  # 20 per class
    method = build_method("rotation", data.spec, **TINY)
    knn_calls = []
    real_knn = budgets.knn_classify

    def knn(xtr, ytr, xte, yte, **p):
        knn_calls.append(len(yte))
        return real_knn(xtr, ytr, xte, yte, **p)

    monkeypatch.setattr(budgets, "knn_classify", knn)
    _, choices = evaluate_protocols(method, labeled, test, ("knn", "random_init"), folds=4)
    grid = len(GRIDS["knn"])
    # kNN of the method and of random init: every grid point on 4 folds of 20 items, then once on the test set
    assert knn_calls == ([20] * (4 * grid) + [40]) * 2
    assert all(len(t["fold_accs"]) == 4 for t in choices["knn"]["trials"])


def test_k_fold_is_refused_for_text_and_for_budgets_below_the_folds():
    from selfsup.api import check_folds
    check_folds(1, "text", [2])  # one split: nothing to check
    check_folds(5, "image", [5, None])
    with pytest.raises(SelfSupError, match="built for image evaluation"):
        check_folds(2, "text", [10])
    with pytest.raises(SelfSupError, match="folds=5 needs at least 5 labels per class, but a budget has 4"):
        check_folds(5, "image", [100, 4])
