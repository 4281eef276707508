"""RotNet label efficiency on Fashion-MNIST: RotNet + linear probe, RotNet + fine-tuning, and the supervised
baseline, at 10, 100 and 1000 labels per class, mean ± std over 3 label draws.

Pretraining: RotNet on the 60,000 Fashion-MNIST training images (labels unused), the RotNet-demo ConvNet.
Protocols: linear probe on the frozen conv2 features (288-d, the notebook's transfer layer); fine-tuning
with conv1+conv2 frozen and conv3 + a new head trained (RotNet's protocol); supervised: the same
conv1..conv3 + head from random init, same labels, same steps. Test: the 10,000 test images.
Usage: python benchmarks/label_efficiency.py [--epochs 3] [--quick]
Results: benchmarks/results/label_efficiency_rotnet.{json,md,png}
"""
import argparse
import json
import time
from pathlib import Path

import torch

from selfsup.api import pretrain
from selfsup.data import load_dataset
from selfsup.evaluate.budgets import label_sweep, summarize
from selfsup.utils import atomic_write_text

OUT = Path("benchmarks/results")
LABELS = {"linear": "RotNet + linear probe (conv2)", "finetune": "RotNet + fine-tune (conv1-2 frozen)",
          "supervised": "supervised (same arch)"}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=3)  # 3 x 60k images x 4 rotations: ~5.5 min here
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    t0 = time.perf_counter()
    splits = load_dataset("fashion-mnist")
    train, test = splits.train, splits.test
    budgets, seeds = (10, 100, 1000), (0, 1, 2)
    if a.quick:
        train, test, budgets, seeds, a.epochs = train.subset(torch.arange(6000)), test.subset(torch.arange(1000)), (10, 100), (0,), 1
    result = pretrain("rotation", data="fashion-mnist", pool=train, epochs=a.epochs, seed=0,
                      run_dir=OUT / "runs" / "label_efficiency_rotnet", train={"progress_bar": False})
    pretrain_s = time.perf_counter() - t0
    method = result.method.eval()
    rows = label_sweep(method, train, test, budgets, seeds, ("linear",), upto="conv2")
    rows += label_sweep(method, train, test, budgets, seeds, ("finetune", "supervised"), freeze_upto="conv2")
    summary = summarize(rows)
    record = {"pretrain_epochs": a.epochs, "pool": len(train), "test": len(test), "encoder": "convnet 64/32/16",
              "pretrain_seconds": pretrain_s, "total_seconds": time.perf_counter() - t0,
              "pretext": result.final, "rows": rows, "summary": summary, "quick": a.quick}
    stem = "label_efficiency_rotnet" + ("_quick" if a.quick else "")
    atomic_write_text(OUT / f"{stem}.json", json.dumps(record, indent=2) + "\n")
    lines = ["| protocol | " + " | ".join(f"{b} labels/class" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    for proto, label in LABELS.items():
        cells = [next(f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}" for s in summary
                      if s["protocol"] == proto and s["labels_per_class"] == b) for b in budgets]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    text = (f"Fashion-MNIST test accuracy (%), mean ± std over {len(seeds)} label draws. RotNet pretrained "
            f"{a.epochs} epochs on {len(train)} unlabeled images in {pretrain_s:.0f} s; total {record['total_seconds']:.0f} s. "
            f"Made by `python benchmarks/label_efficiency.py`.\n\n" + "\n".join(lines) + "\n")
    atomic_write_text(OUT / f"{stem}.md", text)
    print(text)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for proto, label in LABELS.items():
        s = sorted((x for x in summary if x["protocol"] == proto), key=lambda x: x["labels_per_class"])
        ax.errorbar([x["labels_per_class"] for x in s], [100 * x["mean"] for x in s], [100 * x["std"] for x in s],
                    marker="o", capsize=3, label=label, ls="--" if proto == "supervised" else "-")
    ax.set_xscale("log")
    ax.set_xlabel("labels per class")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Fashion-MNIST: RotNet vs supervised")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / f"{stem}.png", dpi=110)


if __name__ == "__main__":
    main()
