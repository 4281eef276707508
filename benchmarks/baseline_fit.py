"""Does a method's supervised baseline fit its labels? The supervised row of the method table trains the
method's encoder from random init with the shared fine-tuning grid. For encoders without BatchNorm whose
activations start tiny (CPC's patch grid), a grid may stop short: a baseline that does not even fit its own
training labels is not a fair opponent. This script found the grid's earlier top, lr 3e-3, short for such
encoders; the grid now reaches 3e-2 (`selfsup.evaluate.tuning`). The last column says whether each lr was
in the grid when that row was measured.

For each method's encoder: its features' scale at init, and the supervised baseline at 100 labels per class
(draw 0, the table's steps and augmentation) over a wider lr range, scored on its training labels and on
2,000 other images of Fashion-MNIST's train part (never the test set), with the linear head on the raw
features ("none") and behind a BatchNorm without affine parameters ("batchnorm", what `head_norm="auto"`
gives encoders without normalisation layers). Resumable per (method, lr, head).

Usage: python benchmarks/baseline_fit.py [--methods cpc rotation mocov2] [--lrs 1e-3 3e-3 1e-2 3e-2 1e-1]
       [--heads none batchnorm]
Results: benchmarks/results/baseline_fit.{json,md}.
"""
import argparse
import json
import time
from pathlib import Path

import torch

from selfsup.bench import BenchConfig, eval_data
from selfsup.evaluate.budgets import draw_budget
from selfsup.evaluate.finetune import supervised_baseline
from selfsup.evaluate.tuning import GRIDS
from selfsup.methods import build_method
from selfsup.utils import atomic_write_text, load_average


def labeled_and_validation(train, labels_per_class: int = 100, validation: int = 2000, seed: int = 0):
    """The table's draw of `labels_per_class` (seed 0) and `validation` other train images."""
    index = draw_budget(train.labels, labels_per_class, seed)
    rest = torch.ones(len(train), dtype=torch.bool)
    rest[index] = False
    others = torch.nonzero(rest).flatten()
    others = others[torch.randperm(len(others), generator=torch.Generator().manual_seed(seed))[:validation]]
    return train.subset(index), train.subset(others)


@torch.no_grad()
def feature_scale(method, data) -> dict:
    features = method.encoder(method.encoder_input(data.batch(torch.arange(256))))
    return {"mean_abs": features.abs().mean().item(), "std_over_images": features.std(0).mean().item()}


def table(items: dict) -> str:
    lines = ["| method | encoder | mean \\|feature\\| at init | head | lr | train acc | validation acc | "
             "in the table's grid (then) |", "|---|---|---|---|---|---|---|---|"]
    for item in sorted(items.values(), key=lambda i: (i["method"], i.get("head_norm", "none"), i["lr"])):
        lines.append(f"| {item['method']} | {item['encoder']} | {item['scale']['mean_abs']:.3g} | "
                     f"{item.get('head_norm', 'none')} | {item['lr']:g} | "
                     f"{100 * item['train_acc']:.1f} | {100 * item['acc']:.1f} | "
                     f"{'yes' if item['in_grid'] else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--methods", nargs="+", default=["cpc", "rotation", "mocov2"])
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    p.add_argument("--heads", nargs="+", default=["none", "batchnorm"], choices=["none", "batchnorm"])
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args()
    path = Path(a.out) / "baseline_fit.json"
    items = json.loads(path.read_text()) if path.exists() else {}
    train, _ = eval_data(BenchConfig())["eval"]
    labeled, validation = labeled_and_validation(train)
    grid_lrs = {point["lr"] for point in GRIDS["supervised"]}
    for name in a.methods:
        torch.manual_seed(0)
        method = build_method(name, train.spec)
        scale = feature_scale(method, labeled)  # of the init every lr below starts from (fresh_copy, seed 0)
        for head, lr in [(head, lr) for head in a.heads for lr in a.lrs]:
            key = f"{name}/{lr:g}" + ("" if head == "none" else f"/{head}")  # rows before heads were "none"
            if key in items:
                continue
            print(f"{key} ...", flush=True)
            t0, load_before = time.perf_counter(), load_average()
            r = supervised_baseline(method, labeled, validation, seed=0, lr=lr, weight_decay=0.0, head_norm=head)
            items[key] = {"method": name, "encoder": f"{method.config.encoder} {method.config.encoder_kwargs}",
                          "scale": scale, "head_norm": head, "lr": lr, "in_grid": lr in grid_lrs,
                          "acc": r["acc"], "train_acc": r["train_acc"], "steps": r["steps"],
                          "seconds": time.perf_counter() - t0, "load_average": [load_before, load_average()]}
            atomic_write_text(path, json.dumps(items, indent=2) + "\n")
    text = ("Supervised baseline at 100 labels per class (draw 0; the method table's steps and augmentation, weight "
            "decay 0) over a wider lr range, with the head on raw or standardised features: accuracy on its own 1,000 training labels and on 2,000 other images of "
            "Fashion-MNIST's train part. Made by `python benchmarks/baseline_fit.py`.\n\n" + table(items) + "\n")
    atomic_write_text(Path(a.out) / "baseline_fit.md", text)
    print(text)


if __name__ == "__main__":
    main()
