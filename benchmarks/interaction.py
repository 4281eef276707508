"""Benchmark of learning from physical interaction (issue 17, section 2) on the simulated poking table.

    .venv/bin/python benchmarks/interaction.py            # the full run; writes benchmarks/results/interaction.*
    .venv/bin/python benchmarks/interaction.py --quick    # a smoke run (small budgets) into /tmp/interaction-quick

Resumable: every finished unit (a pretrained encoder, its evaluation, the supervised rows) is written at
once (weights as safetensors under `interaction_runs/`, rows into `interaction.json`); a rerun with the same
configuration skips what is done. `--fresh` starts over.

Pretraining data: pokes of objects textured with Fashion-MNIST *train* items (`make_interactions`, seed 0).
Rows, each on few-label classification of object properties the encoders were never told (shape class,
mass bin, material), from object-centred 32x32 crops of the before images:
- physical-interaction: pretrained on the pokes (contact patch + action -> moved / distance / rotation);
- rotation (RotNet, 4 angles): pretrained on the same pixels, the 32x32 contact patches of the same pokes;
- random init: the same convnet untrained (fed as the method feeds it);
- supervised: the same convnet trained from scratch on the same labels (`supervised_baseline`).
Frozen encoders get a linear probe and kNN on their features; these and the supervised baseline choose
their hyperparameters on a validation split of each draw's labels (`selfsup.evaluate.tuning`), never the test.
Labels: `labels_per_class` drawn per class from the pretraining pokes' objects (`draw_budget`, one draw per
seed); test: pokes of objects textured with Fashion-MNIST *test* items (seed 1). Mean and sample std over
the draws (`summarize`). Also the pretext accuracy of physical-interaction on the test pokes against
always answering the most frequent class, and a figure of test pokes with predicted and true outcomes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from selfsup.bench import resumable_results
from selfsup.data.base import ImageData
from selfsup.data.interaction import PROPERTIES, make_interactions, property_views
from selfsup.data.sources import fashion_mnist
from selfsup.evaluate.finetune import fresh_copy
from selfsup.evaluate.budgets import label_sweep
from selfsup.evaluate.sweep import summarize
from selfsup.evaluate.tuning import KNN_GRID, LINEAR_GRID
from selfsup.methods.base import build_method
from selfsup.methods.physical_interaction import TASKS, contact_patches, outcome_labels
from selfsup.report.plots import plot_examples
from selfsup.runs import load_weights, save_weights
from selfsup.train import train_steps
from selfsup.utils import atomic_write_text, load_average

FULL = {"pretrain_pokes": 10000, "test_pokes": 2000, "steps": {"physical-interaction": 1500, "rotation": 1500},
        "batch": {"physical-interaction": 128, "rotation": 128}, "budgets": [10, 50], "draws": 3,
        "supervised_steps": 300}
QUICK = {"pretrain_pokes": 800, "test_pokes": 200, "steps": {"physical-interaction": 30, "rotation": 30},
         "batch": {"physical-interaction": 128, "rotation": 128}, "budgets": [10, 50], "draws": 2,
         "supervised_steps": 10}
PRETRAINED = ("physical-interaction", "rotation")


def make_data(cfg: dict) -> dict[str, Any]:
    parts = fashion_mnist()
    t0 = time.perf_counter()
    train = make_interactions(parts.train.images, parts.train.labels, cfg["pretrain_pokes"], seed=0,
                              name="pokes-train")
    test = make_interactions(parts.test.images, parts.test.labels, cfg["test_pokes"], seed=1, name="pokes-test")
    seconds = time.perf_counter() - t0
    patches = ImageData(contact_patches(train.before, train.action, 32), name="contact-patches")  # rotation's data
    views = {prop: (property_views(train, prop), property_views(test, prop)) for prop in PROPERTIES}
    return {"train": train, "test": test, "patches": patches, "views": views,
            "simulation": {"pokes": cfg["pretrain_pokes"] + cfg["test_pokes"], "seconds": seconds,
                           "load_average": load_average()}}


def frozen_rows(method: Any, views: dict, cfg: dict) -> list[dict]:
    """Linear probe and kNN on frozen features, each tuned on a validation split of the drawn labels (never the
    test pokes): one row per property, budget, draw ("seed") and protocol."""
    return [row | {"property": prop} for prop, (pool, test) in views.items()
            for row in label_sweep(method, pool, test, cfg["budgets"], range(cfg["draws"]), ("linear", "knn"),
                                   tune_every_draw=True)]


def supervised_rows(method: Any, views: dict, cfg: dict) -> list[dict]:
    """The same encoder trained from scratch on the same labels, its lr and weight decay tuned on the same kind
    of validation split (the fine-tuning grid), for a fixed number of steps."""
    steps = {"epochs": 1, "min_steps": cfg["supervised_steps"], "max_steps": cfg["supervised_steps"]}
    return [row | {"property": prop} for prop, (pool, test) in views.items()
            for row in label_sweep(method, pool, test, cfg["budgets"], range(cfg["draws"]), ("supervised",),
                                   finetune_kwargs=steps, tune_every_draw=True)]


@torch.no_grad()
def pretext_accuracy(method: Any, test: Any) -> dict[str, dict[str, float]]:
    """Accuracy of each head on the test pokes, and of always answering the most frequent class."""
    batch = test.batch(torch.arange(len(test)))
    logits, labels = method.predict(batch), outcome_labels(batch["outcome"], method.config)
    return {task: {"acc": (logits[task].argmax(1) == labels[task]).float().mean().item(),
                   "majority": torch.bincount(labels[task]).max().item() / len(test)} for task in TASKS}


def run(cfg: dict, out: Path, threads: int, fresh: bool) -> dict:
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    path, weights = out / "interaction.json", out / "interaction_runs"
    results = resumable_results(path, cfg, threads, fresh)
    units = results["units"]
    save = lambda: atomic_write_text(path, json.dumps(results, indent=1))
    t0 = time.perf_counter()
    data = make_data(cfg)
    results["simulation"] = data["simulation"]
    print(f"simulated {data['simulation']['pokes']} pokes in {data['simulation']['seconds']:.1f} s", flush=True)
    methods = {}
    for name in PRETRAINED:
        source = data["train"] if name == "physical-interaction" else data["patches"]
        torch.manual_seed(0)
        method = build_method(name, source.spec)
        file = weights / f"{name}.safetensors"
        if f"pretrain/{name}" in units and file.is_file():
            load_weights(method, file)
            method.eval()
        else:
            units[f"pretrain/{name}"] = train_steps(method, source, cfg["steps"][name], cfg["batch"][name]) | {
                "load_average": load_average(), "steps": cfg["steps"][name], "batch_size": cfg["batch"][name]}
            save_weights(method, file)
            save()
        methods[name] = method
        print(name, json.dumps(units[f"pretrain/{name}"]), flush=True)
    method = methods["physical-interaction"]
    units["pretext"] = pretext_accuracy(method, data["test"])
    encoders = {"physical-interaction": method, "rotation": methods["rotation"], "random init": fresh_copy(method, 0)}
    for name, encoder in encoders.items():
        if f"eval/{name}" not in units:
            units[f"eval/{name}"] = frozen_rows(encoder, data["views"], cfg)
            save()
        print("evaluated", name, flush=True)
    if "eval/supervised" not in units:
        units["eval/supervised"] = supervised_rows(method, data["views"], cfg)
        save()
    results["wall_seconds_this_run"] = time.perf_counter() - t0
    results["load_average_end"] = load_average()
    save()
    atomic_write_text(out / "interaction.md", markdown(results))
    method.eval()
    plot_examples(method.examples(data["test"].batch(torch.arange(8))), out / "interaction_examples.png")
    return results


def markdown(r: dict) -> str:
    cfg, units = r["config"], r["units"]
    budgets = cfg["budgets"]
    summary: dict[tuple, tuple] = {}
    for name in ("physical-interaction", "rotation", "random init", "supervised"):
        for row in summarize(units[f"eval/{name}"], keys=("property", "protocol", "labels_per_class")):
            summary[(name, row["property"], row["protocol"], row["labels_per_class"])] = (row["mean"], row["std"], row["n"])
    cell = lambda key: ("{:.3f} ± {:.3f}".format(*summary[key][:2]) if key in summary else "-")
    pre = {n: units[f"pretrain/{n}"] for n in PRETRAINED}
    sim = r["simulation"]
    lines = ["# Learning from physical interaction (issue 17, section 2)", "",
             f"{cfg['pretrain_pokes']} training pokes (Fashion-MNIST train textures) and {cfg['test_pokes']} test pokes "
             f"(Fashion-MNIST test textures) on the simulated pymunk table, 64x64 greyscale renders; simulating and "
             f"rendering all {sim['pokes']} took {sim['seconds']:.1f} s (load average {sim['load_average']}). "
             f"{r['threads']} threads ({r['machine']}, torch {r['torch']}); the last run took "
             f"{r['wall_seconds_this_run']:.0f} s (resumed units are not redone), load average at its end "
             f"{r['load_average_end']}. Pretraining: " +
             ", ".join(f"{n} {p['steps']} steps x {p['batch_size']} in {p['seconds']:.0f} s "
                       f"(load average {p['load_average']})" for n, p in pre.items()) +
             f". Linear probe and kNN tuned on a validation split of each draw's labels (lr x weight decay "
             f"{len(LINEAR_GRID)} points, k of {[g['k'] for g in KNN_GRID]}); supervised {cfg['supervised_steps']} steps, "
             f"lr and weight decay tuned the same way; "
             f"mean ± sample std over {cfg['draws']} label draws.", "",
             "## Few-label classification of object properties (object-centred 32x32 crops of test pokes)", "",
             "| property | encoder | " + " | ".join(f"linear@{b} | kNN@{b}" for b in budgets) + " |",
             "|---|---|" + "---|---|" * len(budgets)]
    for prop in PROPERTIES:
        for name in ("physical-interaction", "rotation", "random init"):
            lines.append(f"| {prop} | {name} | " + " | ".join(
                f"{cell((name, prop, 'linear', b))} | {cell((name, prop, 'knn', b))}" for b in budgets) + " |")
        lines.append(f"| {prop} | supervised (from scratch, fine-tuned) | " + " | ".join(
            f"{cell(('supervised', prop, 'supervised', b))} | -" for b in budgets) + " |")
    lines += ["", "## Pretext accuracy of physical-interaction on the test pokes", "",
              "| task | accuracy | most frequent class |", "|---|---|---|"]
    lines += [f"| {task} | {v['acc']:.3f} | {v['majority']:.3f} |" for task, v in units["pretext"].items()]
    lines += ["", "Examples: `interaction_examples.png` (before with the push arrow, contact patch, after; true and "
              "predicted classes of each task under each column).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small budgets, to check the script runs (not to read results from)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="ignore earlier results in --out and start over")
    args = parser.parse_args(argv)
    out = args.out or (Path("/tmp/interaction-quick") if args.quick else Path(__file__).parent / "results")
    run(QUICK if args.quick else FULL, out, args.threads, args.fresh)
    print(f"wrote {out}/interaction.json, interaction.md, interaction_examples.png", file=sys.stderr)


if __name__ == "__main__":
    main()
