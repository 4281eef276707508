"""The main job: does self-supervised rotation pretraining help when only 1,000 images are labeled?

The lecture notes' RotNet notebook, then the strongest honest protocols beside it. On Fashion-MNIST:
pretrain RotNet (Gidaris et al., 2018) on 10,000 unlabeled images; draw 1,000 other, labeled images
(100 per class); test on the 10,000 test images. Then the same on MNIST-5k (test: 1,000 digits held out
first; pool: the other 3,000 unlabeled). Each row is repeated over seeds (each seed: its own pool, labels
and pretraining) and reported as mean and spread, whichever side wins.

Rows (encoder: the notebook's ConvNet, 64/32/16 filters):
- notebook: conv1+conv2 frozen from RotNet, a new dense layer on their 288 features, Adam at lr 1e-3 with
  no augmentation or tuning, as in the notebook;
- linear probe: a linear classifier on RotNet's frozen, standardised conv2 features;
- fine-tune: the whole RotNet encoder and a new head trained on the labels;
- supervised: the same network trained from random init on the same labels, with the same augmentation,
  tuning grid and steps as fine-tuning; both put their head behind a BatchNorm without affine parameters
  (`head_norm="auto"`: this ConvNet has no normalisation of its own; see `selfsup.evaluate.finetune`);
- random init: the linear probe on the conv2 features of the untrained network (the floor);
- supervised without augmentation: a reference row, since at this step budget the light augmentation can
  cost the supervised network more than it gives (both sides of the comparison use it by default).
The linear probe, fine-tuning and supervised rows choose their hyperparameters on a validation split of
the 1,000 labels (`selfsup.evaluate.tuning`), on the first seed; later seeds reuse that choice.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from selfsup.api import pretrain
from selfsup.data.sources import load_dataset
from selfsup.data.splits import held_out_test, make_splits
from selfsup.evaluate.budgets import evaluate_protocols
from selfsup.evaluate.finetune import finetune
from selfsup.evaluate.sweep import summarize, sweep
from selfsup.utils import atomic_write_text, load_average


@dataclass
class DemoSetting:
    data: str
    pool_size: int | None
    labels_per_class: int
    epochs: int


# RotNet epochs are sized so the whole demo (3 seeds x 2 datasets) runs in under 10 minutes on 2 CPU cores.
SETTINGS = [DemoSetting("fashion-mnist", 10_000, 100, 5), DemoSetting("mnist5k", None, 100, 10)]
ROWS = [("notebook", "RotNet conv1-2 frozen + dense (the notebook's protocol)"),
        ("linear", "RotNet linear probe (frozen conv2, standardised)"),
        ("finetune", "RotNet fine-tuned (all layers)"),
        ("supervised", "supervised, same network from random init"),
        ("random_init_linear", "random init linear probe (conv2)"),
        ("supervised_no_aug", "supervised without augmentation (reference)")]


def run_setting(s: DemoSetting, seed: int, out: Path, progress: bool, chosen: dict | None) -> tuple[dict, dict]:
    """One dataset and seed: pretrain RotNet, then every row. Returns the run and the hyperparameters chosen."""
    held = held_out_test(load_dataset(s.data))  # the source's test split, or a carved one
    split = make_splits(held.rest, held.test, labels_per_class=s.labels_per_class, pool_size=s.pool_size, seed=seed)
    t0 = time.perf_counter()
    result = pretrain("rotation", data=s.data, pool=split.pool, epochs=s.epochs, seed=seed,
                      run_dir=out / "runs" / f"{s.data}-seed{seed}", train={"progress_bar": progress},
                      overwrite=True)  # the demo's own scratch folder: a rerun (or a stopped one) replaces it
    pretrain_s = time.perf_counter() - t0
    m = result.method.eval()
    acc = {"notebook": finetune(m, split.labeled, split.test, freeze_upto="conv2", upto="conv2", augment=False,
                                head_norm="none", seed=seed)["acc"]}  # the notebook's dense layer on raw features
    probes, choices = evaluate_protocols(m, split.labeled, split.test, ("linear", "random_init"), upto="conv2",
                                         seed=seed, fixed=chosen)
    trained, more = evaluate_protocols(m, split.labeled, split.test, ("finetune", "supervised"), seed=seed, fixed=chosen)
    plain, plain_choice = evaluate_protocols(
        m, split.labeled, split.test, ("supervised",), seed=seed, finetune_kwargs={"augment": False},
        fixed={"supervised": chosen["supervised_no_aug"]} if chosen else None)
    acc |= {k: probes[k] for k in ("linear", "random_init_linear")} | trained
    acc["supervised_no_aug"] = plain["supervised"]
    everything = choices | more | {"supervised_no_aug": plain_choice["supervised"]}
    params = {k: c["params"] for k, c in everything.items()}
    # every grid point's validation accuracy (first seed only: later seeds reuse its choice), so a choice
    # that was a near-tie can be seen as one
    validation = {k: c["trials"] for k, c in everything.items() if c.get("trials")}
    return {"data": s.data, "seed": seed, "pool": len(split.pool), "labeled": len(split.labeled),
            "test": len(split.test), "epochs": s.epochs, "pretrain_seconds": pretrain_s,
            "pretext_acc": result.final.get("train/pretext_acc"), "acc": acc, "params": params,
            "validation_trials": validation,
            "seconds": time.perf_counter() - t0}, params


def summarize_runs(runs: list[dict]) -> list[dict]:
    """The demo's table: per dataset (in run order) and row of ROWS, the shared `summarize` of its seeds."""
    rows = [{"data": r["data"], "protocol": key, "acc": r["acc"][key]} for r in runs for key, _ in ROWS]
    labels = dict(ROWS)
    return [{"data": s["data"], "protocol": s["protocol"], "label": labels[s["protocol"]], "mean": s["mean"],
             "std": s["std"], "seeds": s["n"]} for s in summarize(rows, ("data", "protocol"))]


def markdown(table: list[dict], runs: list[dict]) -> str:
    lines = ["| data | protocol | test accuracy (mean ± std over seeds) |", "|---|---|---|"]
    lines += [f"| {t['data']} | {t['label']} | {100 * t['mean']:.2f} ± {100 * t['std']:.2f} % (n={t['seeds']}) |"
              for t in table]
    for data in dict.fromkeys(r["data"] for r in runs):
        r0 = next(r for r in runs if r["data"] == data)
        lines.append(f"\n{data}: pool {r0['pool']} unlabeled, {r0['labeled']} labeled, test {r0['test']}; "
                     f"RotNet {r0['epochs']} epochs; chosen on validation: {json.dumps(r0['params'])}.")
    return "\n".join(lines) + "\n"


def plot(table: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    datasets = list(dict.fromkeys(t["data"] for t in table))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
    colours = {"supervised": "tab:gray", "random_init_linear": "lightgray", "supervised_no_aug": "silver"}
    for ax, data in zip(axes[0], datasets):
        rows = [t for t in table if t["data"] == data]
        ax.bar(range(len(rows)), [100 * t["mean"] for t in rows], yerr=[100 * t["std"] for t in rows],
               color=[colours.get(t["protocol"], "tab:blue") for t in rows], capsize=4)
        ax.set_xticks(range(len(rows)), [t["protocol"].replace("_", "\n") for t in rows], fontsize=7)
        ax.set_ylim(max(0, min(100 * t["mean"] for t in rows) - 10), 100)
        ax.set_title(f"{data}: 1,000 labels")
        ax.set_ylabel("test accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(out: str | Path = "results/demo", seeds: tuple[int, ...] = (0, 1, 2), settings: list = None,
             progress: bool = True) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0, load_before = time.perf_counter(), load_average()

    def run_seed(s: DemoSetting, seed: int, chosen: dict | None) -> tuple[list[dict], dict]:
        run, params = run_setting(s, seed, out, progress, chosen)
        return [run], params

    # Each setting tunes on its first seed's validation split; its later seeds reuse that choice.
    runs = sweep(settings or SETTINGS, seeds, run_seed)
    table = summarize_runs(runs)
    result = {"table": table, "runs": runs, "seconds": time.perf_counter() - t0,
              "encoder": "convnet (RotNet-demo ConvNet, 64/32/16 filters)", "threads": torch.get_num_threads(),
              "load_average_before": load_before, "load_average_after": load_average()}
    atomic_write_text(out / "demo.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "demo.md", markdown(table, runs))
    plot(table, out / "demo.png")
    return result
