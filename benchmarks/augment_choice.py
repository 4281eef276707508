"""Does the light augmentation favour one side? Fine-tuning and the supervised baseline of a method-table
encoder, evaluated twice in one run: with the light augmentation always on (the table's protocol) and with
validation choosing it on or off per side, like the lr (`finetune_kwargs={"augment": "validation"}`).
Same label draws, grid, steps and seeds as `benchmarks/methods.py`; the test images are only scored.

It reads the encoders the method table pretrained (`benchmarks/results/runs/NAME-seed0`, kept by
`python benchmarks/methods.py --methods NAME`). Resumable per (method, setting).

Usage: python benchmarks/augment_choice.py [--methods mocov2] [--budgets 10 100]
Results: benchmarks/results/augment_choice.{json,md}.
"""
import argparse
import json
import time
from pathlib import Path
from typing import Callable

import torch

from selfsup.bench import BenchConfig, cell, eval_data, mean_of
from selfsup.errors import SelfSupError
from selfsup.evaluate.budgets import label_sweep, summarize
from selfsup.runs import load_run
from selfsup.utils import atomic_write_text, load_average

SETTINGS = {"on": {}, "validation": {"augment": "validation"}}  # "on": the table's protocol


def encoder_of(runs: Path, name: str):
    run = runs / f"{name}-seed0"
    if not run.exists():
        raise SelfSupError(f"no pretrained {name} in {run}: run `python benchmarks/methods.py --methods {name} "
                           "--force` first (its run folder is kept there)")
    return load_run(run).eval()


def evaluate_item(name: str, setting: str, runs: Path, budgets: list[int], data: dict) -> dict:
    method = encoder_of(runs, name)
    train, test = data["eval"]
    t0, load_before = time.perf_counter(), load_average()
    rows = label_sweep(method, train, test, budgets, BenchConfig.seeds, ("finetune", "supervised"),
                       finetune_kwargs=SETTINGS[setting])
    return {"method": name, "setting": setting, "rows": rows, "seconds": time.perf_counter() - t0,
            "load_average": [load_before, load_average()], "threads": torch.get_num_threads()}


def resumable_items(path: Path, todo: dict[str, Callable[[dict], dict]]) -> dict:
    """The items kept in the JSON at `path`, plus each item of `todo` (key -> compute(evaluation data)) not
    there yet, computed in order and kept at once, so an interrupted run resumes at its next item."""
    items = json.loads(path.read_text()) if path.exists() else {}
    data = None
    for key, compute in todo.items():
        if key in items:
            continue
        data = data or eval_data(BenchConfig())
        print(f"{key} ...", flush=True)
        items[key] = compute(data)
        atomic_write_text(path, json.dumps(items, indent=2) + "\n")
    return items


def chosen_augmentation(rows: list[dict], protocol: str, budget: int) -> str:
    """" (aug on/off)": what validation chose on this protocol's draws; "" where it was not a choice."""
    chosen = {r["params"].get("augment") for r in rows if r["protocol"] == protocol and r["labels_per_class"] == budget}
    return "" if chosen == {None} else " (aug " + "/".join("on" if c else "off" for c in sorted(chosen)) + ")"


def table(items: dict, budgets: list[int]) -> str:
    sides = ("finetune", "supervised")
    head = "| method | augmentation | " + " | ".join(f"{p} @{b}" for b in budgets for p in sides)
    head += " | " + " | ".join(f"margin @{b}" for b in budgets) + " |"
    lines = [head, "|" + "---|" * (2 + 3 * len(budgets))]
    for item in items.values():
        summary = summarize(item["rows"])
        cells = [cell(summary, p, b) + chosen_augmentation(item["rows"], p, b) for b in budgets for p in sides]
        margins = [f"{100 * (mean_of(summary, 'finetune', b) - mean_of(summary, 'supervised', b)):+.1f}" for b in budgets]
        lines.append(f"| {item['method']} | {item['setting']} | " + " | ".join(cells + margins) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--methods", nargs="+", default=["mocov2"])
    p.add_argument("--budgets", type=int, nargs="+", default=[10, 100])
    p.add_argument("--results", default="benchmarks/results")
    p.add_argument("--runs", help="the method table's run folders (default: RESULTS/runs)")
    a = p.parse_args()
    results = Path(a.results)
    runs = Path(a.runs) if a.runs else results / "runs"
    todo = {f"{name}/{setting}/{'-'.join(map(str, a.budgets))}":
            lambda data, name=name, setting=setting: evaluate_item(name, setting, runs, a.budgets, data)
            for name in a.methods for setting in SETTINGS}
    items = resumable_items(results / "augment_choice.json", todo)
    text = ("Fine-tuning and the supervised baseline (same encoder, labels, grid, steps), with the light "
            "augmentation always on (the method table's protocol) or chosen on validation per side. Fashion-MNIST "
            f"test accuracy (%), mean ± std over {len(BenchConfig.seeds)} label draws; the augmentation each side "
            "chose in brackets. Made by `python benchmarks/augment_choice.py`.\n\n" + table(items, a.budgets) + "\n")
    atomic_write_text(results / "augment_choice.md", text)
    print(text)


if __name__ == "__main__":
    main()
