"""Run several protocols at several label budgets and seeds; summarise as mean and spread.

Labels are drawn from the source's train part with `stratified_take` (seeded, per class; budget None =
every label); the test part is always the full test set. Features for the linear probe and kNN are
extracted once per call. Each protocol's hyperparameters are chosen on a validation split of the labeled
budget (`selfsup.evaluate.tuning`), then refitted on the whole budget and scored once on the test set.

Protocols: "linear", "knn", "finetune" (the pretrained encoder), "supervised" (the same architecture
from random init, same augmentation, grid and steps) and "random_init" (linear probe and kNN on the
untrained encoder, fed as the method feeds it: the floor a method must beat to count as having learned;
reported as "random_init_linear" and "random_init_knn").

The loop over budgets and seeds and the summary of its rows are the ones every table shares
(`selfsup.evaluate.sweep`); `summarize` is importable from here too.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from selfsup.data.base import DataSource
from selfsup.errors import unknown_name
from selfsup.evaluate.features import FeatureCache, extract_features
from selfsup.evaluate.finetune import finetune, fresh_copy, supervised_baseline
from selfsup.evaluate.knn import knn_classify
from selfsup.evaluate.linear import linear_probe
from selfsup.evaluate.sweep import budget_rows, draw_budget, summarize, sweep  # noqa: F401 (summarize: re-exported)
from selfsup.evaluate.tuning import GRIDS, choose_on_validation, with_augment_choice
from selfsup.methods.base import Method

PROTOCOLS = ("linear", "knn", "finetune", "supervised", "random_init")
FEATURE_PROTOCOLS = {"linear", "knn"}


def tuned_feature_protocols(xtr: Tensor, ytr: Tensor, xte: Tensor, yte: Tensor, protocols: Iterable[str],
                            seed: int, tune: bool = True, prefix: str = "", fixed: dict | None = None,
                            folds: int = 1) -> tuple[dict, dict]:
    """Linear probe and/or kNN on precomputed features, each tuned on a validation split of (xtr, ytr)
    (or by `folds`-fold cross-validation, see `choose_on_validation`).

    `fixed` maps a (prefixed) protocol name to parameters chosen earlier, which are then used as they are.
    Returns ({name: test accuracy}, {name: chosen params and trials}).
    """
    scorers = {
        "linear": lambda fit, ev, p: linear_probe(xtr[fit], ytr[fit], ev[0], ev[1], seed=seed, **p)["acc"],
        "knn": lambda fit, ev, p: knn_classify(xtr[fit], ytr[fit], ev[0], ev[1], **p)["acc"],
    }
    results, choices = {}, {}
    everything = torch.arange(len(ytr))
    for name in protocols:
        score = scorers[name]
        grid = grid_for(name, prefix + name, tune, fixed)
        best, trials = choose_on_validation(grid, ytr, lambda fit, val, p: score(fit, (xtr[val], ytr[val]), p), seed,
                                            folds=folds)
        results[prefix + name] = score(everything, (xte, yte), best)
        choices[prefix + name] = {"params": best, "trials": trials}
    return results, choices


def tuned_block_protocols(features: dict[str, tuple[Tensor, Tensor]], ytr: Tensor, yte: Tensor,
                          protocols: Iterable[str], seed: int) -> tuple[dict, dict]:
    """Linear probe and/or kNN read at the encoder block that does best on validation.

    `features` maps each candidate block to its precomputed (labeled, test) features. The block is one more
    hyperparameter: each is tuned as `tuned_feature_protocols` tunes one, on the same validation split of the
    labels, and each protocol keeps the block whose best grid point scored highest there (the first on ties);
    the test set only scores it. Returns ({name: test accuracy}, {name: {"block", "params", "val_acc"}}).
    """
    best: dict[str, tuple[float, float, str, dict]] = {}
    for block, (xtr, xte) in features.items():
        accs, choices = tuned_feature_protocols(xtr, ytr, xte, yte, protocols, seed)
        for name, acc in accs.items():
            val_acc = max(t["val_acc"] for t in choices[name]["trials"])
            if name not in best or val_acc > best[name][0]:
                best[name] = (val_acc, acc, block, choices[name]["params"])
    return ({name: acc for name, (_, acc, _, _) in best.items()},
            {name: {"block": block, "params": params, "val_acc": val} for name, (val, _, block, params) in best.items()})


def grid_for(protocol: str, name: str, tune: bool, fixed: dict | None) -> list[dict]:
    """The candidates for `protocol`: its grid, the parameters fixed earlier for `name`, or the defaults."""
    if fixed and name in fixed:
        return [fixed[name]]
    return GRIDS[protocol] if tune else [{}]


def tuned_training_protocol(train: Callable[..., dict], labeled: DataSource, test: DataSource, seed: int,
                            grid: list[dict], folds: int = 1, **kwargs: Any) -> tuple[float, dict]:
    """`train(labeled, test, **params, **kwargs)` (finetune or supervised_baseline) tuned on validation."""
    grid, kwargs = with_augment_choice(grid, kwargs)
    fit_and_score = lambda fit, val, p: train(labeled.subset(fit), labeled.subset(val), seed=seed, **p, **kwargs)["acc"]
    best, trials = choose_on_validation(grid, labeled.labels, fit_and_score, seed, folds=folds)
    return train(labeled, test, seed=seed, **best, **kwargs)["acc"], {"params": best, "trials": trials}


def evaluate_protocols(method: Method, labeled: DataSource, test: DataSource, protocols: Iterable[str] = PROTOCOLS,
                       upto: str | None = None, freeze_upto: str | None = None, seed: int = 0,
                       features: dict[str, tuple[Tensor, Tensor]] | None = None,
                       finetune_kwargs: dict | None = None, tune: bool = True,
                       fixed: dict | None = None, folds: int = 1) -> tuple[dict[str, float], dict]:
    """Accuracy on `test` of each protocol trained on `labeled`, and the hyperparameters each chose.

    `features` = precomputed {"method" / "random_init": (labeled features, test features)}; `fixed` =
    {protocol: params} chosen earlier (e.g. on another draw of the same budget), used without tuning;
    `folds` > 1: every protocol is tuned by stratified k-fold cross-validation instead of one split.
    """
    finetune_kwargs = finetune_kwargs or {}
    protocols = check_protocols(protocols)
    features = features or {}
    results: dict[str, float] = {}
    choices: dict[str, dict] = {}
    wanted = [p for p in protocols if p in FEATURE_PROTOCOLS]
    if wanted:
        xtr, xte = features.get("method") or (extract_features(method, labeled, upto), extract_features(method, test, upto))
        r, c = tuned_feature_protocols(xtr, labeled.labels, xte, test.labels, wanted, seed, tune, fixed=fixed,
                                       folds=folds)
        results |= r
        choices |= c
    if "random_init" in protocols:
        xtr, xte = features.get("random_init") or random_init_features(method, labeled, test, upto=upto)
        r, c = tuned_feature_protocols(xtr, labeled.labels, xte, test.labels, ("linear", "knn"), seed, tune,
                                       prefix="random_init_", fixed=fixed, folds=folds)
        results |= r
        choices |= c
    if "finetune" in protocols:
        results["finetune"], choices["finetune"] = tuned_training_protocol(
            lambda *a, **k: finetune(method, *a, freeze_upto=freeze_upto, upto=upto, **k),
            labeled, test, seed, grid_for("finetune", "finetune", tune, fixed), folds, **finetune_kwargs)
    if "supervised" in protocols:
        results["supervised"], choices["supervised"] = tuned_training_protocol(
            lambda *a, **k: supervised_baseline(method, *a, upto=upto, **k), labeled, test, seed,
            grid_for("supervised", "supervised", tune, fixed), folds, **finetune_kwargs)
    return results, choices


def check_protocols(protocols: Iterable[str]) -> list[str]:
    protocols = list(protocols)
    for p in protocols:
        if p not in PROTOCOLS:
            raise unknown_name("protocol", p, list(PROTOCOLS))
    return protocols


def random_init_features(method: Method, *parts: DataSource, upto: str | None = None,
                         seed: int = 0, cache: FeatureCache | None = None) -> tuple[Tensor, ...]:
    """Features of each data part from the same architecture with fresh random weights (never trained)."""
    untrained = fresh_copy(method, seed).to(next(method.parameters()).device).eval()
    return tuple(frozen_features(untrained, part, upto, cache) for part in parts)


def frozen_features(method: Method, data: DataSource, upto: str | None = None,
                    cache: FeatureCache | None = None) -> Tensor:
    """`extract_features(method, data, upto)`, read from `cache` when it holds them (and kept there)."""
    if cache is None:
        return extract_features(method, data, upto)
    return cache.get(method, data, lambda m, d: extract_features(m, d, upto), tag=f"features upto={upto}")


def label_sweep(method: Method, train: DataSource, test: DataSource,
                budgets: Iterable[int | None] = (10, 100, 1000), seeds: Iterable[int] = (0, 1, 2),
                protocols: Iterable[str] = PROTOCOLS, upto: str | None = None,
                freeze_upto: str | None = None, finetune_kwargs: dict | None = None, tune: bool = True,
                tune_every_draw: bool = False, done: Callable | None = None,
                on_draw: Callable | None = None, cache: FeatureCache | None = None, folds: int = 1) -> list[dict]:
    """One row per (budget, seed, protocol): {"labels_per_class", "seed", "protocol", "acc", "params"}.

    A budget of None uses every label of `train` (reported as "all"); its seeds differ in training only.
    Hyperparameters are chosen on the validation split of the first seed's draw of each budget and reused
    for its other draws (each still trained on its own labels), unless `tune_every_draw`: a grid search per
    draw multiplies the cost of fine-tuning by the grid's size. `folds` > 1 tunes by stratified k-fold
    cross-validation instead of one validation split (`choose_on_validation`).

    `done(budget, seed)` returns the rows of a draw finished earlier (a resumed evaluation) or None;
    `on_draw` reports progress (see `sweep`). Features are extracted once, for every budget, seed and
    protocol, only when a draw is left to run, and only of the items some draw labels (10 labels per class
    of a 60,000-item pool need 100 items' features, not 60,000); `cache` keeps them on disk, so an evaluation with
    the same draws (a resumed or repeated one, other protocols) reads them instead of extracting again.
    """
    protocols, budgets, seeds = check_protocols(protocols), list(budgets), list(seeds)
    features = {}
    features_needed = done is None or not all(done(b, s) for b in budgets for s in seeds)
    used = torch.unique(torch.cat([draw_budget(train.labels, b, s) for b in budgets for s in seeds]))  # sorted
    row_of = torch.full((len(train),), -1, dtype=torch.long)
    row_of[used] = torch.arange(len(used))  # item of train -> its row in the features of `labeled`
    labeled = train if len(used) == len(train) else train.subset(used)
    if features_needed and FEATURE_PROTOCOLS & set(protocols):
        features["method"] = (frozen_features(method, labeled, upto, cache), frozen_features(method, test, upto, cache))
    if features_needed and "random_init" in protocols:
        features["random_init"] = random_init_features(method, labeled, test, upto=upto, cache=cache)

    def resumed(budget: int | None, seed: int) -> tuple[list[dict], dict | None] | None:
        rows = done(budget, seed) if done is not None else None
        if not rows:
            return None
        return rows, None if tune_every_draw else {r["protocol"]: r.get("params", {}) for r in rows}

    def evaluate_draw(budget: int | None, seed: int, chosen: dict | None) -> tuple[list[dict], dict | None]:
        index = draw_budget(train.labels, budget, seed)
        drawn = {name: (x[row_of[index]], xt) for name, (x, xt) in features.items()}
        accs, choices = evaluate_protocols(method, train.subset(index), test, protocols, upto, freeze_upto, seed,
                                           drawn, finetune_kwargs, tune, chosen, folds)
        params = {name: c["params"] for name, c in choices.items()}
        return budget_rows(budget, seed, accs, params), None if tune_every_draw else params

    return sweep(budgets, seeds, evaluate_draw, resumed, on_draw)
