"""The main job: the classic RotNet experiment, self-supervised rotation pretraining vs supervision alone.

On Fashion-MNIST: pretrain RotNet on 10,000 unlabeled images; train a classifier on 1,000 other,
labeled images on top of the transferred conv layers; compare with the same architecture trained with
supervision on the same 1,000 labels; test on the full 10,000-image test set. Then the same on MNIST-5k
(pool, labels and test carved from the 5,000 digits), mirroring the lecture notes' MNIST notebook.
Each comparison is repeated over seeds and reported as mean and spread, whichever side wins.

Protocols (encoder: the notebook's ConvNet, 64/32/16 filters):
- transfer: conv1+conv2 frozen from RotNet, a new dense layer on their 288 features (the notebook);
  baseline: conv1+conv2+dense trained from random init on the same labels;
- fine-tune: conv1+conv2 frozen, conv3 and a new head trained (RotNet paper, Gidaris et al. 2018);
  baseline: conv1..conv3+head from random init.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from selfsup.api import pretrain
from selfsup.data.sources import load_dataset
from selfsup.data.splits import make_splits
from selfsup.evaluate.finetune import finetune, supervised_baseline
from selfsup.utils import atomic_write_text


@dataclass
class DemoSetting:
    data: str
    pool_size: int
    labels_per_class: int
    epochs: int


# RotNet epochs are sized so the whole demo (3 seeds x 2 datasets, 4 classifiers each) runs in under
# 10 minutes on 2 CPU cores (3.9 min with benchmarks/demo.py); the notebook trained longer.
SETTINGS = [DemoSetting("fashion-mnist", 10_000, 100, 5), DemoSetting("mnist5k", None, 100, 10)]
ROWS = [("transfer", "RotNet conv1-2 frozen + dense (notebook)"),
        ("supervised_transfer_arch", "supervised, same arch (conv1-2 + dense)"),
        ("finetune", "RotNet conv1-2 frozen, conv3 + head trained (paper)"),
        ("supervised_finetune_arch", "supervised, same arch (conv1-3 + head)")]


def run_setting(s: DemoSetting, seed: int, out: Path, progress: bool) -> dict:
    splits = load_dataset(s.data)
    split = make_splits(splits.train, splits.test, labels_per_class=s.labels_per_class, pool_size=s.pool_size,
                        seed=seed)
    t0 = time.perf_counter()
    result = pretrain("rotation", data=s.data, pool=split.pool, epochs=s.epochs, seed=seed,
                      run_dir=out / "runs" / f"{s.data}-seed{seed}", train={"progress_bar": progress})
    pretrain_s = time.perf_counter() - t0
    m = result.method.eval()
    acc = {
        "transfer": finetune(m, split.labeled, split.test, freeze_upto="conv2", upto="conv2", seed=seed)["acc"],
        "supervised_transfer_arch": supervised_baseline(m, split.labeled, split.test, upto="conv2", seed=seed)["acc"],
        "finetune": finetune(m, split.labeled, split.test, freeze_upto="conv2", seed=seed)["acc"],
        "supervised_finetune_arch": supervised_baseline(m, split.labeled, split.test, seed=seed)["acc"],
    }
    return {"data": s.data, "seed": seed, "pool": len(split.pool), "labeled": len(split.labeled),
            "test": len(split.test), "epochs": s.epochs, "pretrain_seconds": pretrain_s,
            "pretext_acc": result.final.get("train/pretext_acc"), "acc": acc,
            "seconds": time.perf_counter() - t0}


def summarize(runs: list[dict]) -> list[dict]:
    table = []
    for data in dict.fromkeys(r["data"] for r in runs):
        rs = [r for r in runs if r["data"] == data]
        for key, label in ROWS:
            vals = [r["acc"][key] for r in rs]
            table.append({"data": data, "protocol": key, "label": label, "mean": statistics.fmean(vals),
                          "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "seeds": len(vals)})
    return table


def markdown(table: list[dict], runs: list[dict]) -> str:
    lines = ["| data | protocol | test accuracy (mean ± std over seeds) |", "|---|---|---|"]
    lines += [f"| {t['data']} | {t['label']} | {100 * t['mean']:.2f} ± {100 * t['std']:.2f} % (n={t['seeds']}) |"
              for t in table]
    for data in dict.fromkeys(r["data"] for r in runs):
        r0 = next(r for r in runs if r["data"] == data)
        lines.append(f"\n{data}: pool {r0['pool']} unlabeled, {r0['labeled']} labeled, test {r0['test']}; "
                     f"RotNet {r0['epochs']} epochs.")
    return "\n".join(lines) + "\n"


def plot(table: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    datasets = list(dict.fromkeys(t["data"] for t in table))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, data in zip(axes[0], datasets):
        rows = [t for t in table if t["data"] == data]
        colors = ["tab:blue" if "supervised" not in t["protocol"] else "tab:gray" for t in rows]
        ax.bar(range(len(rows)), [100 * t["mean"] for t in rows], yerr=[100 * t["std"] for t in rows],
               color=colors, capsize=4)
        ax.set_xticks(range(len(rows)), [t["protocol"].replace("_", "\n") for t in rows], fontsize=7)
        low = min(100 * t["mean"] for t in rows)
        ax.set_ylim(max(0, low - 10), 100)
        ax.set_title(f"{data}: 1,000 labels")
        ax.set_ylabel("test accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(out: str | Path = "results/demo", seeds: tuple[int, ...] = (0, 1, 2), settings: list = None,
             progress: bool = True) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.perf_counter()
    runs = [run_setting(s, seed, out, progress) for s in (settings or SETTINGS) for seed in seeds]
    table = summarize(runs)
    result = {"table": table, "runs": runs, "seconds": time.perf_counter() - t0,
              "encoder": "convnet (RotNet-demo ConvNet, 64/32/16 filters)", "threads": torch.get_num_threads()}
    atomic_write_text(out / "demo.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "demo.md", markdown(table, runs))
    plot(table, out / "demo.png")
    return result
