"""Benchmark of the text pretext tasks (issues 5 and 11): pretrain on a large unlabeled corpus, then classify
fortune categories from few labels.

    .venv/bin/python benchmarks/text.py                  # the full run (about 1 h 15 min on 2 free cores)
    .venv/bin/python benchmarks/text.py --minutes 30     # the language models' pretraining budget, each
    .venv/bin/python benchmarks/text.py --quick          # a smoke run (tiny budgets) into /tmp/text-quick

Pretraining data: GCIDE (Debian's dict-gcide, `selfsup.data.text.gcide`): about 125k dictionary entries,
~29 MB of English prose, every 100th entry held out for the held-out curves; WordPiece vocabulary of 8,000
trained on the training entries, 64 subwords per document.
Budget (stated, `--minutes` / `--pair-minutes`): MLM and CLM pretrain for `minutes` each, the pair tasks (nsp,
sop, mlm-nsp, mlm-sop) for `pair_minutes` each; minutes are turned into a step count by timing 10 steps of
a throw-away copy first (lower quartile), so the warm-up and cosine schedule know their length (`--steps` fixes the count
instead, for a repeatable run). The time spent on the curve points is not part of the budget.
Model: a small BERT / GPT-2 (Hugging Face `transformers`) of `model` size, the same for every method.
Curves: at `curve_points` evenly spaced steps, the held-out perplexity and token accuracy (MLM: masked-token
accuracy; CLM: next-token) on 2,000 held-out GCIDE entries, and the training batches' pretext accuracy.
Labeled task: Debian fortunes, the 16 categories with >= 400 entries, 400 drawn per category (seeded),
tokenized with the GCIDE vocabulary. 50 documents per category are held out as the test set (seed 0); label
budgets are 5, 20 and all 350 per class, 3 seeds each (`stratified_take`).
Protocols: linear probe on frozen [CLS] and mean-pooled features (`selfsup.evaluate.linear_probe`), and
fine-tuning the whole Transformer with a new linear head (`selfsup.evaluate.finetune`). Baselines on the
same labels: the same Transformer from scratch (`supervised_baseline`), TF-IDF bag-of-words logistic
regression, and linear probes on a random-init Transformer. Also: 4 samples from the CLM.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from selfsup.bench import typical_seconds
from selfsup.data.splits import stratified_take
from selfsup.data.text import TextData, fortunes, gcide
from selfsup.evaluate.text import heldout_lm_metrics, summarize_rows, text_label_sweep
from selfsup.methods.base import build_method
from selfsup.text.generate import generate
from selfsup.train import lr_factor, make_optimizer
from selfsup.utils import atomic_write_text

METHODS = ["mlm", "clm", "nsp", "sop", "mlm-nsp", "mlm-sop"]
LANGUAGE_MODELS = ("mlm", "clm")
# The model: BERT-mini-like width and depth halved again (BERT-mini: 4 layers, 256 wide). Not yet timed on
# a free machine; on this busy one (load ~9) an MLM step of 64 x 64 tokens took ~5 s at this size.
MODEL = {"dim": 128, "layers": 4, "heads": 4, "ffn_dim": 512}
FULL = {"corpus_documents": None, "vocab_size": 8000, "seq_len": 64, "minutes": 20.0, "pair_minutes": 4.0,
        "steps": None, "max_steps": 20000, "batch_size": 64, "curve_points": 12, "model": MODEL,
        "per_class": 400, "test_per_class": 50, "budgets": [5, 20, None], "seeds": [0, 1, 2],
        "finetune": {"epochs": 5, "min_steps": 30, "max_steps": 80, "batch_size": 32}}
QUICK = {"corpus_documents": 3000, "vocab_size": 1000, "seq_len": 64, "minutes": None, "pair_minutes": None,
         "steps": 6, "max_steps": 6, "batch_size": 32, "curve_points": 2,
         "model": {"dim": 32, "layers": 2, "heads": 2, "ffn_dim": 64},
         "per_class": 20, "test_per_class": 5, "budgets": [5], "seeds": [0],
         "finetune": {"epochs": 1, "min_steps": 2, "max_steps": 2, "batch_size": 16}}
PROMPTS = ["", "the", "a computer", "love is"]


def one_step(method: Any, opt: torch.optim.Optimizer, batch: dict) -> tuple[torch.Tensor, dict]:
    loss, metrics = method.loss(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss, metrics


def steps_for(method: Any, data: TextData, minutes: float, batch_size: int, max_steps: int) -> tuple[int, float]:
    """The step count that `minutes` of training buys, timed on a throw-away copy (`typical_seconds`: the
    lower quartile of 10 steps, so another job on the machine does not shrink the budget)."""
    trial = copy.deepcopy(method).train()
    opt = make_optimizer(trial.trainable_parameters(), trial.config)
    g = torch.Generator().manual_seed(12345)
    step = lambda: one_step(trial, opt, data.batch(torch.randint(len(data), (batch_size,), generator=g)))
    [seconds] = typical_seconds([step], repeats=10)
    return max(1, min(max_steps, int(60 * minutes / seconds))), seconds


def train_steps(method: Any, data: TextData, steps: int, batch_size: int, seed: int = 0,
                heldout: TextData | None = None, curve_points: int = 0) -> dict[str, Any]:
    """`steps` optimizer steps on seeded random batches, with the trainer's optimizer and LR schedule; at
    `curve_points` evenly spaced steps (and step 0) a curve point: held-out metrics (language models) and
    the mean pretext accuracy of the training batches since the previous point."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = make_optimizer(method.trainable_parameters(), method.config)
    base = [group["lr"] for group in opt.param_groups]
    warmup = round(method.config.warmup_epochs * len(data) / batch_size)
    at = sorted({round(steps * (i + 1) / curve_points) for i in range(curve_points)}) if curve_points else []
    curve, seen, curve_seconds = [], [], 0.0

    def point(step: int) -> None:
        nonlocal curve_seconds
        t = time.perf_counter()
        row = {"step": step, "train_pretext_acc": sum(seen) / len(seen) if seen else float("nan")}
        if heldout is not None:
            row |= {f"heldout_{k}": v for k, v in heldout_lm_metrics(method, heldout, seed=seed).items()}
        curve.append(row)
        seen.clear()
        curve_seconds += time.perf_counter() - t

    if at:
        point(0)
    method.train()
    start, metrics = time.perf_counter(), {}
    for step in range(steps):
        for group, lr in zip(opt.param_groups, base):
            group["lr"] = lr * lr_factor(step, steps, min(warmup, steps // 4), method.config.schedule)
        index = torch.randint(len(data), (batch_size,), generator=g)
        loss, metrics = one_step(method, opt, data.batch(index))
        method.after_step((step + 1) / steps)
        seen.append(float(metrics.get("mlm_acc", metrics.get("pretext_acc", float("nan")))))
        if step + 1 in at:
            point(step + 1)
    return {"steps": steps, "seconds": time.perf_counter() - start - curve_seconds, "curve_seconds": curve_seconds,
            "final_loss": loss.item(), **{k: float(v) for k, v in metrics.items()}, "curve": curve}


def split(cfg: dict, tokenizer: Any) -> tuple[TextData, TextData]:
    """The labeled task, tokenized with the pretraining corpus's vocabulary: a label pool and a test set."""
    data = fortunes(per_class=cfg["per_class"], seq_len=cfg["seq_len"], tokenizer=tokenizer).train
    test_index = stratified_take(data.labels, per_class=cfg["test_per_class"], generator=torch.Generator().manual_seed(0))
    rest = torch.ones(len(data), dtype=torch.bool)
    rest[test_index] = False
    return data.subset(torch.nonzero(rest).flatten(), name="fortunes-pool"), data.subset(test_index, name="fortunes-test")


def budget_of(name: str, cfg: dict) -> float | None:
    return cfg["minutes"] if name in LANGUAGE_MODELS else cfg["pair_minutes"]


def run(cfg: dict, out: Path, threads: int) -> dict:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    corpus = gcide(seq_len=cfg["seq_len"], vocab_size=cfg["vocab_size"], max_documents=cfg["corpus_documents"])
    pool, test = split(cfg, corpus.train.tokenizer)
    counts = torch.bincount(pool.labels).tolist()
    results: dict[str, Any] = {
        "config": {k: v for k, v in cfg.items()}, "threads": threads, "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "load_average_start": os.getloadavg(),
        "corpus": {"name": "gcide", "train_documents": len(corpus.train), "heldout_documents": len(corpus.test),
                   "train_tokens": int((corpus.train.input_ids != 0).sum())},
        "classes": pool.classes, "pool_per_class": counts, "test_size": len(test),
        "data_seconds": time.perf_counter() - t0, "pretrain": {}, "rows": [], "samples": []}
    print(f"data: {results['corpus']} in {results['data_seconds']:.0f} s", flush=True)
    options = {"encoder_kwargs": dict(cfg["model"])}
    sweep = dict(budgets=cfg["budgets"], seeds=cfg["seeds"], finetune_kwargs=cfg["finetune"])
    for name in METHODS:
        torch.manual_seed(0)
        method = build_method(name, corpus.train.spec, **options)
        minutes, step_seconds = budget_of(name, cfg), None
        steps = cfg["steps"]
        if steps is None:
            steps, step_seconds = steps_for(method, corpus.train, minutes, cfg["batch_size"], cfg["max_steps"])
        results["pretrain"][name] = {"budget_minutes": minutes, "timed_step_seconds": step_seconds} | train_steps(
            method, corpus.train, steps, cfg["batch_size"], heldout=corpus.test, curve_points=cfg["curve_points"])
        t = time.perf_counter()
        rows = text_label_sweep(method, pool, test, protocols=("linear", "finetune"), **sweep)
        results["rows"] += [dict(r, method=name) for r in rows]
        results["pretrain"][name]["eval_seconds"] = time.perf_counter() - t
        if name == "clm":
            results["samples"] = [{"prompt": p, "text": generate(method, pool.tokenizer, p, max_new_tokens=40,
                                                                 temperature=0.8, top_k=40, seed=i)}
                                  for i, p in enumerate(PROMPTS)]
        shown = {k: v for k, v in results["pretrain"][name].items() if k != "curve"}
        print(f"{name}: {shown}", flush=True)
    torch.manual_seed(0)
    random_init = build_method("mlm", corpus.train.spec, **options)
    rows = text_label_sweep(random_init, pool, test, protocols=("linear", "scratch", "bow"), **sweep)
    for r in rows:
        r["method"] = {"scratch": "from-scratch", "bow": "bag-of-words"}.get(r["protocol"], "random-init")
    results["rows"] += rows
    results["wall_seconds"] = time.perf_counter() - t0
    results["load_average_end"] = os.getloadavg()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "text.json", json.dumps(results, indent=1))
    atomic_write_text(out / "text.md", markdown(results))
    plot(results, out / "text_label_efficiency.png")
    plot_curves(results, out / "text_curves.png")
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
        "# Text pretext tasks: pretrained on GCIDE, fortune category classification from few labels",
        "",
        f"Pretraining corpus: GCIDE (Debian dict-gcide), {results['corpus']['train_documents']:,} entries "
        f"({results['corpus']['train_tokens']:,} subword tokens as 64-subword documents), "
        f"{results['corpus']['heldout_documents']:,} held out for the curves"
        + (f" (a spread subset of {cfg['corpus_documents']:,})" if cfg.get("corpus_documents") else "") + ". "
        f"Load average at start {fmt_load(results.get('load_average_start'))}, at end "
        f"{fmt_load(results.get('load_average_end'))} (2 cores).",
        "",
        f"{len(results['classes'])} fortune categories ({', '.join(results['classes'])}); "
        f"{cfg['per_class']} entries drawn per category, {cfg['test_per_class']} per category held out "
        f"({results['test_size']} test documents); \"all\" = {all_n} labels per class. "
        f"WordPiece vocabulary {cfg['vocab_size']}, {cfg['seq_len']} subwords per document. Accuracy in %, mean ± std "
        f"over seeds {cfg['seeds']} (label draws and heads; one pretraining run per method, seed 0). "
        f"Chance: {100 / len(results['classes']):.1f}%.",
        "",
        f"Pretraining budget: {budget_text(cfg)}, batches of {cfg['batch_size']} documents (the encoder: "
        f"{cfg['model']['layers']} layers, width {cfg['model']['dim']}, {cfg['model']['heads']} heads, FFN "
        f"{cfg['model']['ffn_dim']}; a Hugging Face BertModel, GPT2Model for clm). Fine-tuning: {cfg['finetune']}. Linear probe: 100 epochs of Adam on "
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
              "| method | steps | seconds | eval seconds | final loss | pretext acc | other |", "|---|---|---|---|---|---|---|"]
    for name, p in results["pretrain"].items():
        other = ", ".join(f"{k}={v:.3g}" for k, v in p.items() if isinstance(v, float) and k not in
                          ("seconds", "eval_seconds", "final_loss", "pretext_acc", "budget_minutes"))
        lines.append(f"| {name} | {p.get('steps', '?')} | {p['seconds']:.0f} | {p.get('eval_seconds', 0):.0f} | "
                     f"{p['final_loss']:.3f} | {p.get('pretext_acc', float('nan')):.3f} | {other} |")
    for name in LANGUAGE_MODELS:
        curve = results["pretrain"].get(name, {}).get("curve", [])
        if not curve:
            continue
        what = "masked-token" if name == "mlm" else "next-token"
        lines += ["", f"Learning curve of {name} (held-out: {what} accuracy and perplexity on the held-out GCIDE "
                      f"entries; train: mean {what} accuracy of the training batches since the previous point):", "",
                  "| step | train acc | held-out acc | held-out perplexity |", "|---|---|---|---|"]
        lines += [f"| {c['step']} | {100 * c['train_pretext_acc']:.1f} | {100 * c.get('heldout_token_acc', float('nan')):.1f}"
                  f" | {c.get('heldout_perplexity', float('nan')):.1f} |" for c in curve]
    lines += ["", "Samples from the CLM (temperature 0.8, top-k 40):", ""]
    lines += [f"- prompt {s['prompt']!r}: {s['text']}" for s in results["samples"]]
    return "\n".join(lines) + "\n"


def fmt_load(load: Any) -> str:
    return "not recorded" if not load else " / ".join(f"{x:.1f}" for x in load)


def budget_text(cfg: dict) -> str:
    if cfg.get("steps"):
        return f"{cfg['steps']} steps per method"
    return (f"{cfg['minutes']} minutes each for mlm and clm, {cfg['pair_minutes']} for each pair task "
            f"(turned into steps by timing; the steps are in the pretraining table)")


def plot_curves(results: dict, path: Path) -> None:
    """The language models' held-out curves: token accuracy and perplexity against steps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name in LANGUAGE_MODELS:
        curve = [c for c in results["pretrain"].get(name, {}).get("curve", []) if "heldout_perplexity" in c]
        if curve:
            steps = [c["step"] for c in curve]
            axes[0].plot(steps, [100 * c["heldout_token_acc"] for c in curve], marker="o", label=name)
            axes[1].plot(steps, [c["heldout_perplexity"] for c in curve], marker="o", label=name)
    axes[0].set_ylabel("held-out token accuracy (%)\n(mlm: masked tokens; clm: next token)")
    axes[1].set_ylabel("held-out perplexity")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Pretraining on GCIDE: held-out curves")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    parser.add_argument("--minutes", type=float, default=None,
                        help=f"pretraining minutes for mlm and clm, each (full run: {FULL['minutes']})")
    parser.add_argument("--pair-minutes", type=float, default=None,
                        help=f"pretraining minutes for each pair task (full run: {FULL['pair_minutes']})")
    parser.add_argument("--steps", type=int, default=None, help="a fixed step count per method instead of minutes")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--replot", type=Path, default=None, help="redraw table and plot from this text.json")
    args = parser.parse_args(argv)
    if args.replot:
        results = json.loads(args.replot.read_text())
        atomic_write_text(args.replot.parent / "text.md", markdown(results))
        plot(results, args.replot.parent / "text_label_efficiency.png")
        plot_curves(results, args.replot.parent / "text_curves.png")
        return
    out = args.out or (Path("/tmp/text-quick") if args.quick else Path(__file__).parent / "results")
    cfg = dict(QUICK if args.quick else FULL)
    for key, value in (("minutes", args.minutes), ("pair_minutes", args.pair_minutes), ("steps", args.steps)):
        if value is not None:
            if value <= 0:
                parser.error(f"--{key.replace('_', '-')} must be positive")
            cfg[key] = value
    if args.minutes is not None and args.pair_minutes is None and cfg["pair_minutes"] is None:
        cfg["pair_minutes"] = args.minutes / 5
    if args.steps is None and (args.minutes or args.pair_minutes):
        cfg["steps"] = None  # a stated time budget overrides the quick run's fixed steps
        cfg["minutes"] = cfg["minutes"] or cfg["pair_minutes"] * 5
        cfg["pair_minutes"] = cfg["pair_minutes"] or cfg["minutes"] / 5
    results = run(cfg, out, args.threads)
    print(f"wrote {out}/text.json, text.md, text_label_efficiency.png in {results['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
