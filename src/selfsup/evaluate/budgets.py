"""Run several protocols at several label budgets and seeds; summarise as mean and spread.

Labels are drawn from the source's train part with `stratified_take` (seeded, per class); the test part
is always the full test set. Features for the linear probe and kNN are extracted once per call.
"""
from __future__ import annotations

import statistics
from typing import Any, Iterable

import torch

from selfsup.data.splits import stratified_take
from selfsup.errors import unknown_name
from selfsup.evaluate.features import extract_features
from selfsup.evaluate.finetune import finetune, supervised_baseline
from selfsup.evaluate.knn import knn_classify
from selfsup.evaluate.linear import linear_probe

PROTOCOLS = ("linear", "knn", "finetune", "supervised")


def evaluate_protocols(method: Any, labeled: Any, test: Any, protocols: Iterable[str] = PROTOCOLS,
                       upto: str | None = None, freeze_upto: str | None = None, seed: int = 0,
                       features: tuple[torch.Tensor, torch.Tensor] | None = None,
                       finetune_kwargs: dict | None = None) -> dict[str, float]:
    """Accuracy on `test` of each protocol trained on `labeled`. `features` = precomputed (labeled, test)."""
    finetune_kwargs = finetune_kwargs or {}
    protocols = list(protocols)
    for p in protocols:
        if p not in PROTOCOLS:
            raise unknown_name("protocol", p, list(PROTOCOLS))
    results: dict[str, float] = {}
    if {"linear", "knn"} & set(protocols):
        if features is None:
            features = (extract_features(method, labeled, upto), extract_features(method, test, upto))
        xtr, xte = features
        if "linear" in protocols:
            results["linear"] = linear_probe(xtr, labeled.labels, xte, test.labels, seed=seed)["acc"]
        if "knn" in protocols:
            results["knn"] = knn_classify(xtr, labeled.labels, xte, test.labels)["acc"]
    if "finetune" in protocols:
        results["finetune"] = finetune(method, labeled, test, freeze_upto=freeze_upto, upto=upto, seed=seed,
                                       **finetune_kwargs)["acc"]
    if "supervised" in protocols:
        results["supervised"] = supervised_baseline(method, labeled, test, upto=upto, seed=seed,
                                                    **finetune_kwargs)["acc"]
    return results


def label_sweep(method: Any, train: Any, test: Any, budgets: Iterable[int] = (10, 100, 1000),
                seeds: Iterable[int] = (0, 1, 2), protocols: Iterable[str] = PROTOCOLS, upto: str | None = None,
                freeze_upto: str | None = None, finetune_kwargs: dict | None = None) -> list[dict]:
    """One row per (budget, seed, protocol): {"labels_per_class", "seed", "protocol", "acc"}."""
    protocols = list(protocols)
    train_x = extract_features(method, train, upto) if {"linear", "knn"} & set(protocols) else None
    test_x = extract_features(method, test, upto) if train_x is not None else None
    rows = []
    for budget in budgets:
        for seed in seeds:
            index = stratified_take(train.labels, per_class=budget, generator=torch.Generator().manual_seed(seed))
            labeled = train.subset(index)
            features = None if train_x is None else (train_x[index], test_x)
            accs = evaluate_protocols(method, labeled, test, protocols, upto, freeze_upto, seed, features,
                                      finetune_kwargs)
            rows += [{"labels_per_class": budget, "seed": seed, "protocol": p, "acc": a} for p, a in accs.items()]
    return rows


def summarize(rows: list[dict], keys: tuple[str, ...] = ("protocol", "labels_per_class")) -> list[dict]:
    """Mean and sample standard deviation of `acc` over seeds, one row per distinct `keys`."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r["acc"])
    return [dict(zip(keys, k)) | {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                                  "n": len(v)} for k, v in groups.items()]
