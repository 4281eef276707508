"""Does k-fold tuning pick better at 10 labels per class? Fine-tuning and the supervised baseline of a
method-table encoder tuned by 5-fold cross-validation of each draw's labels (`folds=5`) instead of the
table's one 20% split, which at 10 labels per class holds 2 images per class: there the table's ViT
fine-tuning chose lr 1e-2 for MAE (61.9) where a smaller lr had given 68.8.

Same label draws, grid, steps and seeds as `benchmarks/methods.py` (the choice is made on the first draw and
reused on the others, as there); the test images are only scored. The one-split rows are read from the
committed table (`benchmarks/results/methods/NAME.json` and its baseline in `_baselines.json`): evaluation
is deterministic on CPU, so recomputing them would repeat them. It reads the encoders the method table
pretrained (`benchmarks/results/runs/NAME-seed0`). Resumable per (method, protocol). 5-fold tuning costs
5x the table's: about 22 minutes per protocol and row for a ViT-tiny here.

Usage: python benchmarks/kfold_choice.py [--methods mae] [--protocols finetune supervised] [--folds 5]
Results: benchmarks/results/kfold_choice.{json,md}.
"""
import argparse
import json
import time
from pathlib import Path

import torch
from augment_choice import encoder_of, resumable_items

from selfsup.bench import BenchConfig
from selfsup.evaluate.budgets import label_sweep, summarize
from selfsup.utils import atomic_write_text, load_average

BUDGET = 10


def evaluate_item(name: str, protocol: str, folds: int, runs: Path, data: dict) -> dict:
    method = encoder_of(runs, name)
    train, test = data["eval"]
    t0, load_before = time.perf_counter(), load_average()
    rows = label_sweep(method, train, test, (BUDGET,), BenchConfig.seeds, (protocol,), folds=folds)
    return {"method": name, "protocol": protocol, "folds": folds, "rows": rows,
            "seconds": time.perf_counter() - t0, "load_average": [load_before, load_average()],
            "threads": torch.get_num_threads()}


def table_rows(results: Path, name: str, protocol: str) -> list[dict]:
    """The method table's rows of this protocol at 10 labels (one validation split)."""
    row = json.loads((results / "methods" / f"{name}.json").read_text())
    rows = row["rows"]
    if protocol == "supervised":
        rows = json.loads((results / "methods" / "_baselines.json").read_text())[row["baseline_key"]]["rows"]
    return [r for r in rows if r["protocol"] == protocol and r["labels_per_class"] == BUDGET]


def describe(rows: list[dict]) -> str:
    (s,) = summarize(rows)
    chosen = sorted({(r["params"]["lr"], r["params"]["weight_decay"]) for r in rows})
    return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f} (" + "; ".join(f"lr {lr:g}, wd {wd:g}" for lr, wd in chosen) + ")"


def table(items: dict, results: Path) -> str:
    lines = ["| method | protocol | one 20% split (the table) | k-fold | k-fold − one split |", "|---|---|---|---|---|"]
    for item in items.values():
        split = table_rows(results, item["method"], item["protocol"])
        gain = summarize(item["rows"])[0]["mean"] - summarize(split)[0]["mean"]
        lines.append(f"| {item['method']} | {item['protocol']} | {describe(split)} | {item['folds']}-fold: "
                     f"{describe(item['rows'])} | {100 * gain:+.1f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--methods", nargs="+", default=["mae"])
    p.add_argument("--protocols", nargs="+", choices=["finetune", "supervised"], default=["finetune", "supervised"])
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--results", default="benchmarks/results")
    p.add_argument("--runs", help="the method table's run folders (default: RESULTS/runs)")
    a = p.parse_args()
    results = Path(a.results)
    runs = Path(a.runs) if a.runs else results / "runs"
    todo = {f"{name}/{protocol}/{a.folds}":
            lambda data, name=name, protocol=protocol: evaluate_item(name, protocol, a.folds, runs, data)
            for name in a.methods for protocol in a.protocols}
    items = resumable_items(results / "kfold_choice.json", todo)
    text = (f"Fine-tuning and the supervised baseline at {BUDGET} labels per class, tuned on one 20% validation split "
            "(the method table's protocol, 2 images per class) or by k-fold cross-validation of the labels. "
            f"Fashion-MNIST test accuracy (%), mean ± std over {len(BenchConfig.seeds)} label draws, and the lrs "
            "and weight decays chosen. Made by `python benchmarks/kfold_choice.py`.\n\n" + table(items, results) + "\n")
    atomic_write_text(results / "kfold_choice.md", text)
    print(text)


if __name__ == "__main__":
    main()
