"""Benchmark of the text pretext tasks (issue 5): fortune category classification from few labels.

    .venv/bin/python benchmarks/text.py            # the full run; writes benchmarks/results/text.*
    .venv/bin/python benchmarks/text.py --quick    # a smoke run (tiny budgets) into /tmp/text-quick

Data: Debian fortunes, the 16 categories with >= 400 entries, 400 drawn per category (seeded), WordPiece
vocabulary of 4,000 trained on them, 64 subwords per document. 50 documents per category are held out
as the test set (seed 0); the other 350 per category are the unlabeled pretraining pool and the source of
the label budgets (5, 20 and all 350 per class, 3 seeds each, drawn with `stratified_take`).
Methods: mlm, clm, nsp, sop, mlm-nsp, mlm-sop, each pretrained from the same seed for the same number of
steps with its own Config (AdamW, warm-up then cosine, the trainer's `make_optimizer` / `lr_factor`).
Protocols: linear probe on frozen [CLS] and mean-pooled features (`selfsup.evaluate.linear_probe`), and
fine-tuning the whole Transformer with a new linear head (`selfsup.evaluate.finetune`). Baselines on the
same labels: the same Transformer from scratch (`supervised_baseline`), TF-IDF bag-of-words logistic
regression, and linear probes on a random-init Transformer. Also: 4 samples from the CLM.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from selfsup.data.splits import stratified_take
from selfsup.data.text import TextData, fortunes
from selfsup.evaluate.text import summarize_rows, text_label_sweep
from selfsup.methods.base import build_method
from selfsup.text.generate import generate
from selfsup.train import lr_factor, make_optimizer
from selfsup.utils import atomic_write_text

METHODS = ["mlm", "clm", "nsp", "sop", "mlm-nsp", "mlm-sop"]
# Sized from a partial run on a busy machine (mlm: 216 s pretraining + 419 s evaluation on 1 contended
# thread, about 4x slower than a free core): about 10 minutes on 2 free cores, not yet measured there.
FULL = {"per_class": 400, "test_per_class": 50, "vocab_size": 4000, "seq_len": 64, "steps": 300, "batch_size": 64,
        "budgets": [5, 20, None], "seeds": [0, 1, 2],
        "finetune": {"epochs": 5, "min_steps": 30, "max_steps": 80, "batch_size": 32}}
QUICK = {"per_class": 40, "test_per_class": 10, "vocab_size": 1000, "seq_len": 64, "steps": 5, "batch_size": 32,
         "budgets": [5, None], "seeds": [0, 1],
         "finetune": {"epochs": 1, "min_steps": 2, "max_steps": 2, "batch_size": 16}}
PROMPTS = ["", "the", "a computer", "love is"]


def train_steps(method: Any, data: TextData, steps: int, batch_size: int, seed: int = 0) -> dict[str, float]:
    """`steps` optimizer steps on seeded random batches, with the trainer's optimizer and LR schedule."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = make_optimizer(method.trainable_parameters(), method.config)
    base = [group["lr"] for group in opt.param_groups]
    warmup = round(method.config.warmup_epochs * len(data) / batch_size)
    method.train()
    start, metrics = time.perf_counter(), {}
    for step in range(steps):
        for group, lr in zip(opt.param_groups, base):
            group["lr"] = lr * lr_factor(step, steps, min(warmup, steps // 4), method.config.schedule)
        index = torch.randint(len(data), (batch_size,), generator=g)
        loss, metrics = method.loss(data.batch(index))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.after_step((step + 1) / steps)
    return {"seconds": time.perf_counter() - start, "final_loss": loss.item(),
            **{k: float(v) for k, v in metrics.items()}}


def split(cfg: dict) -> tuple[TextData, TextData]:
    data = fortunes(per_class=cfg["per_class"], vocab_size=cfg["vocab_size"], seq_len=cfg["seq_len"]).train
    test_index = stratified_take(data.labels, per_class=cfg["test_per_class"], generator=torch.Generator().manual_seed(0))
    rest = torch.ones(len(data), dtype=torch.bool)
    rest[test_index] = False
    return data.subset(torch.nonzero(rest).flatten(), name="fortunes-pool"), data.subset(test_index, name="fortunes-test")


def run(cfg: dict, out: Path, threads: int) -> dict:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    pool, test = split(cfg)
    counts = torch.bincount(pool.labels).tolist()
    results: dict[str, Any] = {
        "config": {k: v for k, v in cfg.items()}, "threads": threads, "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "classes": pool.classes,
        "pool_per_class": counts, "test_size": len(test), "data_seconds": time.perf_counter() - t0,
        "pretrain": {}, "rows": [], "samples": []}
    sweep = dict(budgets=cfg["budgets"], seeds=cfg["seeds"], finetune_kwargs=cfg["finetune"])
    for name in METHODS:
        method = build_method(name, pool.spec)
        results["pretrain"][name] = train_steps(method, pool, cfg["steps"], cfg["batch_size"])
        t = time.perf_counter()
        rows = text_label_sweep(method, pool, test, protocols=("linear", "finetune"), **sweep)
        results["rows"] += [dict(r, method=name) for r in rows]
        results["pretrain"][name]["eval_seconds"] = time.perf_counter() - t
        if name == "clm":
            results["samples"] = [{"prompt": p, "text": generate(method, pool.tokenizer, p, max_new_tokens=40,
                                                                 temperature=0.8, top_k=40, seed=i)}
                                  for i, p in enumerate(PROMPTS)]
        print(f"{name}: {results['pretrain'][name]}", flush=True)
    torch.manual_seed(0)
    random_init = build_method("mlm", pool.spec)
    rows = text_label_sweep(random_init, pool, test, protocols=("linear", "scratch", "bow"), **sweep)
    for r in rows:
        r["method"] = {"scratch": "from-scratch", "bow": "bag-of-words"}.get(r["protocol"], "random-init")
    results["rows"] += rows
    results["wall_seconds"] = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "text.json", json.dumps(results, indent=1))
    atomic_write_text(out / "text.md", markdown(results))
    plot(results, out / "text_label_efficiency.png")
    return results


def table(results: dict) -> dict[tuple[str, str], dict[Any, tuple[float, float]]]:
    """{(method, protocol): {labels_per_class: (mean, std)}}."""
    by_method: dict[str, list[dict]] = {}
    for r in results["rows"]:
        by_method.setdefault(r["method"], []).append(r)
    out: dict[tuple[str, str], dict[Any, tuple[float, float]]] = {}
    for method, rows in by_method.items():
        for (budget, protocol), stats in summarize_rows(rows).items():
            out.setdefault((method, protocol), {})[budget] = stats
    return out


def budget_label(b: Any) -> str:
    return "all" if b in (None, "all") else str(b)


def markdown(results: dict) -> str:
    cfg = results["config"]
    budgets = [budget_label(b) for b in cfg["budgets"]]
    all_n = results["pool_per_class"][0]
    lines = [
        "# Text pretext tasks: fortune category classification from few labels",
        "",
        f"{len(results['classes'])} fortune categories ({', '.join(results['classes'])}); "
        f"{cfg['per_class']} entries drawn per category, {cfg['test_per_class']} per category held out "
        f"({results['test_size']} test documents); \"all\" = {all_n} labels per class. "
        f"WordPiece vocabulary {cfg['vocab_size']}, {cfg['seq_len']} subwords per document. Accuracy in %, mean ± std "
        f"over seeds {cfg['seeds']} (label draws and heads; one pretraining run per method, seed 0). "
        f"Chance: {100 / len(results['classes']):.1f}%.",
        "",
        f"Pretraining budget: {cfg['steps']} steps of {cfg['batch_size']} documents per method (the encoder: 2 "
        f"pre-LN layers, width 64, 4 heads). Fine-tuning: {cfg['finetune']}. Linear probe: 100 epochs of Adam on "
        f"standardised frozen features. Threads: {results['threads']}; total wall time "
        f"{results['wall_seconds']:.0f} s.",
        "",
        "| method | protocol | " + " | ".join(f"{b}/class" for b in budgets) + " |",
        "|---|---|" + "---|" * len(budgets),
    ]
    for (method, protocol), stats in table(results).items():
        cells = []
        for b in cfg["budgets"]:
            mean, std = stats.get(b if b is not None else "all", (float("nan"), float("nan")))
            cells.append(f"{100 * mean:.1f} ± {100 * std:.1f}")
        lines.append(f"| {method} | {protocol} | " + " | ".join(cells) + " |")
    lines += ["", "Pretraining (final batch metrics, seconds):", "",
              "| method | seconds | eval seconds | final loss | pretext acc | other |", "|---|---|---|---|---|---|"]
    for name, p in results["pretrain"].items():
        other = ", ".join(f"{k}={v:.3g}" for k, v in p.items()
                          if k not in ("seconds", "eval_seconds", "final_loss", "pretext_acc"))
        lines.append(f"| {name} | {p['seconds']:.0f} | {p.get('eval_seconds', 0):.0f} | {p['final_loss']:.3f} | "
                     f"{p.get('pretext_acc', float('nan')):.3f} | {other} |")
    lines += ["", "Samples from the CLM (temperature 0.8, top-k 40):", ""]
    lines += [f"- prompt {s['prompt']!r}: {s['text']}" for s in results["samples"]]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, stats = results["config"], table(results)
    budgets = [b if b is not None else "all" for b in cfg["budgets"]]
    xs = [b if b != "all" else results["pool_per_class"][0] for b in budgets]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    panels = [("linear probe (frozen [CLS] / mean for clm)", "linear"), ("fine-tuning", "finetune")]
    for ax, (title, kind) in zip(axes, panels):
        for method in METHODS:
            protocol = kind if kind == "finetune" else ("linear_mean" if method == "clm" else "linear_cls")
            if (method, protocol) in stats:
                ys = [stats[(method, protocol)].get(b, (float("nan"), 0)) for b in budgets]
                ax.errorbar(xs, [100 * m for m, _ in ys], [100 * s for _, s in ys], marker="o", capsize=3,
                            label=method)
        for method, protocol, style in [("from-scratch", "scratch", "k--"), ("bag-of-words", "bow", "k:"),
                                        ("random-init", "linear_cls", "k-.")]:
            if (method, protocol) in stats and (kind == "linear" or method != "random-init"):
                ys = [stats[(method, protocol)].get(b, (float("nan"), 0)) for b in budgets]
                ax.errorbar(xs, [100 * m for m, _ in ys], [100 * s for _, s in ys], fmt=style, capsize=3,
                            label=method)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("labels per class")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="center right", fontsize=8)
    fig.suptitle(f"Fortune categories ({len(results['classes'])} classes): label efficiency of text pretext tasks")
    fig.tight_layout(rect=(0, 0, 0.87, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets, to check the script runs")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--replot", type=Path, default=None, help="redraw table and plot from this text.json")
    args = parser.parse_args(argv)
    if args.replot:
        results = json.loads(args.replot.read_text())
        atomic_write_text(args.replot.parent / "text.md", markdown(results))
        plot(results, args.replot.parent / "text_label_efficiency.png")
        return
    out = args.out or (Path("/tmp/text-quick") if args.quick else Path(__file__).parent / "results")
    results = run(QUICK if args.quick else FULL, out, args.threads)
    print(f"wrote {out}/text.json, text.md, text_label_efficiency.png in {results['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
