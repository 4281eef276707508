"""One sweep over label budgets and seeds, and one summary of its rows (images, text and the demo).

`sweep` runs one draw per (group, seed), groups outermost: a group is a label budget (image and text
sweeps) or a whole setting (the demo). The hyperparameters a group's first draw chooses on its validation
split are handed to the group's later draws, which reuse them instead of tuning again.

`summarize` reduces rows to the mean and the sample standard deviation (`statistics.stdev`, n - 1 in the
denominator) of `acc` over seeds, with `n`. A single value has std 0.0: no spread was measured, and `n`
says so (0.0 rather than None keeps tables and error bars printable).
"""
from __future__ import annotations

import statistics
from typing import Any, Callable, Iterable, TypeVar

import torch
from torch import Tensor

from selfsup.data.splits import stratified_take

Row = dict[str, Any]
Group = TypeVar("Group")


def sweep(groups: Iterable[Group], seeds: Iterable[int],
          run_draw: Callable[[Group, int, dict | None], tuple[list[Row], dict | None]],
          done: Callable[[Group, int], tuple[list[Row], dict | None] | None] | None = None,
          on_draw: Callable[[Group, int, list[Row] | None], None] | None = None) -> list[Row]:
    """The rows of `run_draw(group, seed, chosen)` for every group and seed, in that order.

    `run_draw` returns its rows and the hyperparameters it chose (or None). `chosen` is None for a group's
    first seed, then the first non-empty choice a draw of that group returned (a draw that returns None
    leaves later draws to tune afresh).

    `done(group, seed)` returns the rows and choice of a draw finished earlier (an interrupted evaluation,
    resumed), or None: such a draw is not run again. `on_draw(group, seed, None)` is called before every
    draw that runs and `on_draw(group, seed, rows)` after it, e.g. to show progress and write the rows so far.
    """
    seeds = list(seeds)
    rows: list[Row] = []
    for group in groups:
        chosen = None
        for seed in seeds:
            earlier = done(group, seed) if done is not None else None
            if earlier is not None:
                drawn, choice = earlier
            else:
                if on_draw is not None:
                    on_draw(group, seed, None)
                drawn, choice = run_draw(group, seed, chosen)
                if on_draw is not None:
                    on_draw(group, seed, drawn)
            rows += drawn
            chosen = chosen or choice
    return rows


def draw_budget(labels: Tensor, budget: int | None, seed: int) -> Tensor:
    """Indices of `budget` labels per class (stratified, seeded), or of every label when `budget` is None."""
    if budget is None:
        return torch.arange(len(labels))
    return stratified_take(labels, per_class=budget, generator=torch.Generator().manual_seed(seed))


def budget_rows(budget: int | None, seed: int, accs: dict[str, float],
                params: dict[str, dict] | None = None) -> list[Row]:
    """One row per protocol of one draw: {"labels_per_class" ("all" for every label), "seed", "protocol",
    "acc"}, and "params" (the hyperparameters the protocol used) when `params` is given."""
    labels_per_class = "all" if budget is None else budget
    return [{"labels_per_class": labels_per_class, "seed": seed, "protocol": p, "acc": acc}
            | ({} if params is None else {"params": params.get(p, {})}) for p, acc in accs.items()]


def mean_and_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0.0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(rows: list[Row], keys: tuple[str, ...] = ("protocol", "labels_per_class")) -> list[Row]:
    """{**keys, "mean", "std", "n"} of `acc` per distinct `keys`, in the order the groups first appear."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r["acc"])
    summary = []
    for key, values in groups.items():
        mean, std = mean_and_std(values)
        summary.append(dict(zip(keys, key)) | {"mean": mean, "std": std, "n": len(values)})
    return summary
