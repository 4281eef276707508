"""`selfsup bench`: pretrain every registered image method with its default budget and evaluate it on
Fashion-MNIST: linear probe and kNN at 10 / 100 / 1000 labels per class, full fine-tuning at 100, each over
3 label draws, against the supervised baseline of the same encoder on the same labels and step budget
(computed once per encoder configuration and shared by the methods that use it).

Each method's result is written to `OUT/methods/NAME.json` as soon as it is done (a long bench can be
stopped and continued: finished methods are skipped unless --force); the table (`OUT/methods.md`,
`OUT/methods.json`) and the label-efficiency plot (`OUT/label_efficiency.png`) are rebuilt from those files.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Iterable

import torch

from selfsup.api import pretrain
from selfsup.data.sources import load_dataset
from selfsup.evaluate.budgets import label_sweep, summarize
from selfsup.methods.base import METHODS
from selfsup.utils import atomic_write_text

EVAL_DATA = "fashion-mnist"
POOL_SIZE = 10_000  # pretraining images for Fashion-MNIST methods (a seeded subset of the 60k train part)


def image_methods() -> list[str]:
    return [n for n in METHODS.names() if METHODS.get(n).modality == "image"]


def bench_method(name: str, out: Path, budgets: Iterable[int], seeds: Iterable[int], quick: bool,
                 epochs_scale: float = 0.5) -> dict:
    cls = METHODS.get(name)
    epochs = 1 if quick else max(1, round(cls.default_epochs * epochs_scale))
    pool = 2_000 if quick else POOL_SIZE
    t0 = time.perf_counter()
    result = pretrain(name, data=cls.default_data, epochs=epochs, pool_size=pool, seed=0,
                      run_dir=out / "runs" / name, train={"progress_bar": False, "knn_every": 0})
    pretrain_s = time.perf_counter() - t0
    splits = load_dataset(EVAL_DATA)
    train, test = splits.train, splits.test
    if quick:
        train, test = train.subset(torch.arange(5_000)), test.subset(torch.arange(1_000))
        budgets = [b for b in budgets if b <= 100]
    method = result.method.eval()
    finetune_kwargs = {"max_steps": 100} if quick else {}
    rows = label_sweep(method, train, test, budgets, seeds, ("linear", "knn"))
    rows += label_sweep(method, train, test, (100,), seeds, ("finetune",), finetune_kwargs=finetune_kwargs)
    supervised = supervised_rows(method, train, test, seeds, out, quick, finetune_kwargs)
    return {"method": name, "pretrain_data": cls.default_data, "pool": pool,
            "epochs": epochs, "batch_size": cls.default_batch_size, "encoder": method.config.encoder,
            "encoder_kwargs": method.config.encoder_kwargs, "pretrain_seconds": pretrain_s,
            "images_per_s": result.images_per_s,
            "pretext": {k: v for k, v in result.final.items() if k.startswith("train/") and "step" not in k},
            "rows": rows, "supervised_rows": supervised, "eval_seconds": time.perf_counter() - t0 - pretrain_s,
            "quick": quick}


def supervised_rows(method, train, test, seeds, out: Path, quick: bool, finetune_kwargs: dict) -> list[dict]:
    """The supervised baseline at 100 labels per class for this encoder configuration, cached on disk."""
    key = json.dumps([method.config.encoder, method.config.encoder_kwargs, method.spec.channels, quick], sort_keys=True)
    cache = out / "methods" / "_supervised.json"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if key not in known:
        known[key] = label_sweep(method, train, test, (100,), seeds, ("supervised",), finetune_kwargs=finetune_kwargs)
        atomic_write_text(cache, json.dumps(known, indent=2) + "\n")
    return known[key]


def fmt(summary: list[dict], protocol: str, budget: int) -> str:
    for s in summary:
        if s["protocol"] == protocol and s["labels_per_class"] == budget:
            return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"
    return "—"


def build_table(out: Path) -> dict:
    results = [json.loads(p.read_text()) for p in sorted((out / "methods").glob("*.json")) if p.name[0] != "_"]
    lines = ["| method | encoder | pretraining (data, epochs, wall) | linear @100 | kNN @100 | fine-tune @100 "
             "| supervised @100 (same encoder) |", "|---|---|---|---|---|---|---|"]
    for r in results:
        summary = summarize(r["rows"])
        sup = summarize(r["supervised_rows"])
        enc = r["encoder"] + (f" {r['encoder_kwargs']}" if r["encoder_kwargs"] else "")
        lines.append(f"| {r['method']} | {enc} | {r['pretrain_data']}, {r['epochs']} ep, {r['pretrain_seconds']:.0f} s "
                     f"| {fmt(summary, 'linear', 100)} | {fmt(summary, 'knn', 100)} | {fmt(summary, 'finetune', 100)} "
                     f"| {fmt(sup, 'supervised', 100)} |")
    meta = {"machine": platform.platform(), "processor": platform.processor(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "eval_data": EVAL_DATA, "pool_size": POOL_SIZE}
    text = ("Test accuracy (%) on the 10,000 Fashion-MNIST test images, mean ± std over 3 label draws "
            "(seeds 0-2); one pretraining run per method (seed 0). Fine-tuning trains the whole encoder and a new "
            "head; the supervised baseline trains the same encoder from random init with the same labels and "
            f"steps. Made by `python benchmarks/methods.py` ({meta['threads']} threads, torch {meta['torch']}).\n\n"
            + "\n".join(lines) + "\n")
    atomic_write_text(out / "methods.md", text)
    atomic_write_text(out / "methods.json", json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    if results:
        plot_label_efficiency(results, out / "label_efficiency.png")
    return {"results": results, "table": text}


def plot_label_efficiency(results: list[dict], path: Path, protocol: str = "linear") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 5))
    for r in results:
        s = sorted((x for x in summarize(r["rows"]) if x["protocol"] == protocol), key=lambda x: x["labels_per_class"])
        ax.errorbar([x["labels_per_class"] for x in s], [100 * x["mean"] for x in s], [100 * x["std"] for x in s],
                    marker="o", ms=3, capsize=2, label=r["method"])
    for r in results:
        if r["method"] == "rotation":  # the supervised baseline of the default encoder, as a reference point
            (s,) = summarize(r["supervised_rows"])
            ax.errorbar([100], [100 * s["mean"]], [100 * s["std"]], marker="*", ms=10, color="k", ls="",
                        label="supervised @100 (convnet, fine-tuned)")
    ax.set_xscale("log")
    ax.set_xlabel("labels per class")
    ax.set_ylabel(f"test accuracy (%), {protocol}")
    ax.set_title("Fashion-MNIST label efficiency")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_bench(methods: list[str] | None = None, out: str | Path = "benchmarks/results", quick: bool = False,
              budgets: Iterable[int] = (10, 100, 1000), seeds: Iterable[int] = (0, 1, 2), force: bool = False,
              epochs_scale: float = 0.5) -> dict:
    """Bench each method (default: every image method) at `epochs_scale` x its default epochs (0.5 by
    default, so the whole table fits in well under an hour on 2 CPU cores)."""
    out = Path(out)
    (out / "methods").mkdir(parents=True, exist_ok=True)
    for name in methods or image_methods():
        target = out / "methods" / f"{name}.json"
        if target.exists() and not force and not quick:
            print(f"{name}: done already ({target})")
            continue
        print(f"{name}: pretraining and evaluating ...", flush=True)
        result = bench_method(name, out, budgets, seeds, quick, epochs_scale)
        atomic_write_text(target, json.dumps(result, indent=2) + "\n")
        print(f"{name}: {result['pretrain_seconds']:.0f} s pretraining, {result['eval_seconds']:.0f} s evaluation")
    table = build_table(out)
    print(table["table"])
    return table
