"""Benchmark of the sequence and motion methods (issue 6) on 2 CPU cores, in about 10 minutes.

    .venv/bin/python benchmarks/sequences.py            # the full run; writes benchmarks/results/sequences.*
    .venv/bin/python benchmarks/sequences.py --quick    # a smoke run (tiny budgets) into /tmp/sequences-quick

Rows:
- temporal-order, cpc-sequence, tracking-colorization: pretrained on moving-sprites clips (Fashion-MNIST
  train objects), evaluated on few-label frame classification: object-centred 48x48 frames from held-out
  clips of Fashion-MNIST *test* objects, a linear probe and kNN on frozen features with 10 and 100 labelled
  frames per class, against a random-init encoder (same probe) and the supervised baseline (the same
  encoder trained from scratch on the same labels, `selfsup.evaluate.supervised_baseline`).
  tracking-colorization's encoder stops at conv2 (the blocks its loss trains; the other two read conv3),
  so it gets its own random-init and supervised rows of that shorter encoder.
- tracking-colorization also: mask IoU (DAVIS J) of propagating the first frame's masks through held-out
  colour clips with the learned attention, no further training, against copying the first-frame mask
  and against the attention of a random-init network.
- egomotion vs egomotion-invariant (the paper's slowness baseline) and random init: pretrained on view
  pairs of the simulated agent, evaluated on Fashion-MNIST test images with 10 / 100 labels per class.

Every method gets the same optimiser settings as `selfsup pretrain` (its Config, cosine schedule) and a
fixed number of steps, stated in the output. One seed (0): differences of a point or two are noise.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from selfsup.data.base import ImageData
from selfsup.data.egomotion import MOTIONS, make_egomotion_pairs
from selfsup.data.sources import fashion_mnist
from selfsup.data.splits import stratified_take
from selfsup.data.sprites import make_sprite_clips, object_frames
from selfsup.evaluate.features import extract_features
from selfsup.evaluate.finetune import fresh_copy, supervised_baseline
from selfsup.evaluate.knn import knn_classify
from selfsup.evaluate.linear import linear_probe
from selfsup.evaluate.propagation import propagate_masks, tracking_iou
from selfsup.methods.base import build_method
from selfsup.train import train_steps
from selfsup.utils import atomic_write_text

# Steps per method: about the same wall time each (a temporal-order step sees 192 frames, CPC 256,
# colourisation 64, egomotion 256 images of 28x28).
FULL = {"train_clips": 2000, "test_clips": 400, "ego_pairs": 20000,
        "steps": {"temporal-order": 400, "cpc-sequence": 300, "tracking-colorization": 600, "egomotion": 600,
                  "egomotion-invariant": 600},
        "budgets": [10, 100], "supervised_steps": 300, "probe_epochs": 100}
QUICK = {"train_clips": 200, "test_clips": 60, "ego_pairs": 1000,
         "steps": {name: 10 for name in FULL["steps"]}, "budgets": [10], "supervised_steps": 10, "probe_epochs": 5}
BATCH = {"temporal-order": 64, "cpc-sequence": 32, "tracking-colorization": 32, "egomotion": 128,
         "egomotion-invariant": 128}
KNN_K = 20  # few labels: 200 neighbours would exceed the 100-frame budget


def few_label_rows(method: Any, pool: ImageData, test: ImageData, budgets: list[int], cfg: dict) -> dict:
    """Linear probe and kNN on frozen features, for each label budget (seeded, stratified)."""
    pool_x, test_x = extract_features(method, pool), extract_features(method, test)
    rows = {}
    for per_class in budgets:
        index = stratified_take(pool.labels, per_class=per_class, generator=torch.Generator().manual_seed(0))
        x, y = pool_x[index], pool.labels[index]
        rows[str(per_class)] = {
            "linear": linear_probe(x, y, test_x, test.labels, epochs=cfg["probe_epochs"])["acc"],
            "knn": knn_classify(x, y, test_x, test.labels, k=KNN_K)["acc"]}
    return rows


def supervised_rows(method: Any, pool: ImageData, test: ImageData, budgets: list[int], cfg: dict) -> dict:
    rows = {}
    for per_class in budgets:
        index = stratified_take(pool.labels, per_class=per_class, generator=torch.Generator().manual_seed(0))
        result = supervised_baseline(method, pool.subset(index), test, epochs=1, min_steps=cfg["supervised_steps"])
        rows[str(per_class)] = {"finetune": result["acc"]}
    return rows


def sprite_data(cfg: dict) -> dict[str, Any]:
    parts = fashion_mnist()
    train, test = parts.train, parts.test
    make = lambda src, n, seed, colors: make_sprite_clips(src.images, src.labels, n, classes=src.classes,
                                                          colors=colors, seed=seed)
    data = {"gray_train": make(train, cfg["train_clips"], 0, False),
            "gray_test": make(test, cfg["test_clips"], 1, False),
            "color_train": make(train, cfg["train_clips"], 2, True),
            "color_test": make(test, cfg["test_clips"], 3, True)}
    data["frames_pool"] = object_frames(data["gray_train"], frames_per_object=2, name="sprite-frames-pool")
    data["frames_test"] = object_frames(data["gray_test"], frames_per_object=1, name="sprite-frames-test")
    data["ego_train"] = make_egomotion_pairs(train.images, train.labels, cfg["ego_pairs"], classes=train.classes)
    g = torch.Generator().manual_seed(0)
    data["fashion_pool"] = train.subset(torch.randperm(len(train), generator=g)[:20000])
    data["fashion_test"] = test.subset(stratified_take(test.labels, per_class=200, generator=g))
    return data


def run(cfg: dict, out: Path, threads: int) -> dict:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    data = sprite_data(cfg)
    results: dict[str, Any] = {"config": cfg, "threads": threads, "machine": platform.processor() or platform.machine(),
                               "torch": torch.__version__, "data_seconds": time.perf_counter() - t0, "rows": {}}
    methods = {}
    for name, train in [("temporal-order", data["gray_train"]), ("cpc-sequence", data["gray_train"]),
                        ("tracking-colorization", data["color_train"])]:
        torch.manual_seed(0)
        method = build_method(name, train.spec)
        random_init = fresh_copy(method, seed=0)
        row = {"pretrain": train_steps(method, train, cfg["steps"][name], BATCH[name]), "batch_size": BATCH[name],
               "steps": cfg["steps"][name]}
        row["frames"] = few_label_rows(method, data["frames_pool"], data["frames_test"], cfg["budgets"], cfg)
        if name == "temporal-order":  # temporal-order and cpc-sequence: the same grey convnet, one random-init row
            results["rows"]["random-init-frames"] = few_label_rows(random_init, data["frames_pool"],
                                                                  data["frames_test"], cfg["budgets"], cfg)
        if name == "tracking-colorization":  # its encoder stops at conv2: random init and supervised of that
            row["frames_random_init"] = few_label_rows(random_init, data["frames_pool"], data["frames_test"],
                                                       cfg["budgets"], cfg)
            row["frames_supervised"] = supervised_rows(method, data["frames_pool"], data["frames_test"],
                                                       cfg["budgets"], cfg)
            row["tracking"] = {ref: tracking_iou(method, data["color_test"], reference=ref)
                               for ref in ("previous", "first")}
            row["tracking_random_init"] = tracking_iou(random_init, data["color_test"], reference="first")
        results["rows"][name] = row
        methods[name] = method
        print(name, json.dumps(row), flush=True)
    results["rows"]["supervised-frames"] = supervised_rows(methods["temporal-order"], data["frames_pool"],
                                                          data["frames_test"], cfg["budgets"], cfg)
    for name in ("egomotion", "egomotion-invariant"):
        torch.manual_seed(0)
        method = build_method(name, data["ego_train"].spec)
        row = {"pretrain": train_steps(method, data["ego_train"], cfg["steps"][name], BATCH[name]),
               "batch_size": BATCH[name], "steps": cfg["steps"][name],
               "fashion": few_label_rows(method, data["fashion_pool"], data["fashion_test"], cfg["budgets"], cfg)}
        if name == "egomotion":
            row["fashion_random_init"] = few_label_rows(fresh_copy(method, 0), data["fashion_pool"],
                                                        data["fashion_test"], cfg["budgets"], cfg)
        results["rows"][name] = row
        methods[name] = method
        print(name, json.dumps(row), flush=True)
    results["rows"]["supervised-fashion"] = supervised_rows(methods["egomotion"], data["fashion_pool"],
                                                           data["fashion_test"], cfg["budgets"], cfg)
    results["wall_seconds"] = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sequences.json", json.dumps(results, indent=1))
    atomic_write_text(out / "sequences.md", markdown(results))
    examples_figure(methods, data, out / "sequences_examples.png")
    return results


def markdown(r: dict) -> str:
    cfg, rows = r["config"], r["rows"]
    budgets = [str(b) for b in cfg["budgets"]]
    head = " | ".join(f"lin@{b} | kNN@{b}" for b in budgets)
    lines = ["# Sequences and motion (issue 6)", "",
             f"Wall time {r['wall_seconds']:.0f} s on {r['threads']} threads ({r['machine']}, torch {r['torch']}); "
             f"one seed. Pretraining steps x batch: " +
             ", ".join(f"{n} {rows[n]['steps']} x {rows[n]['batch_size']}" for n in cfg["steps"]) +
             f"; {cfg['train_clips']} sprite clips (8 x 48 x 48), {cfg['ego_pairs']} egomotion view pairs. "
             f"kNN k={KNN_K}; "
             f"linear probe {cfg['probe_epochs']} epochs; supervised baseline {cfg['supervised_steps']} steps.", "",
             "## Few-label frame classification", "",
             "Object-centred frames of held-out clips (Fashion-MNIST test objects); labels from training clips.", "",
             f"| encoder | pretrain s | {head} |", "|---|---|" + "---|---|" * len(budgets)]
    for name in ("temporal-order", "cpc-sequence", "tracking-colorization"):
        row = rows[name]
        cells = " | ".join(f"{row['frames'][b]['linear']:.3f} | {row['frames'][b]['knn']:.3f}" for b in budgets)
        lines.append(f"| {name} | {row['pretrain']['seconds']:.0f} | {cells} |")
    rand = rows["random-init-frames"]
    cells = " | ".join(f"{rand[b]['linear']:.3f} | {rand[b]['knn']:.3f}" for b in budgets)
    lines.append(f"| random init (same convnet, conv3 features) | 0 | {cells} |")
    tr = rows["tracking-colorization"]
    rand = tr["frames_random_init"]
    cells = " | ".join(f"{rand[b]['linear']:.3f} | {rand[b]['knn']:.3f}" for b in budgets)
    lines.append(f"| random init (conv1-conv2, tracking-colorization's encoder) | 0 | {cells} |")
    sup, sup_tr = rows["supervised-frames"], tr["frames_supervised"]
    lines += ["", "Supervised baseline (same convnet from scratch, same labels): " +
              ", ".join(f"{b}/class {sup[b]['finetune']:.3f}" for b in budgets) +
              "; with tracking-colorization's conv1-conv2 encoder: " +
              ", ".join(f"{b}/class {sup_tr[b]['finetune']:.3f}" for b in budgets), ""]
    lines += ["## Mask propagation (held-out colour clips, first-frame masks given, no training)", "",
              "| tracker | mean J (frames 1-7) |", "|---|---|",
              f"| learned attention, reference = previous frame | {tr['tracking']['previous']['iou']:.3f} |",
              f"| learned attention, reference = first frame | {tr['tracking']['first']['iou']:.3f} |",
              f"| random-init attention, reference = first frame | {tr['tracking_random_init']['iou']:.3f} |",
              f"| copy the first-frame mask | {tr['tracking']['first']['copy_first_iou']:.3f} |", "",
              "## Ego-motion (Fashion-MNIST test images, labels from Fashion-MNIST train)", "",
              f"| encoder | pretrain s | {head} |", "|---|---|" + "---|---|" * len(budgets)]
    for name, key in (("egomotion", "fashion"), ("egomotion-invariant", "fashion"),
                      ("random init", "fashion_random_init")):
        row = rows["egomotion" if name == "random init" else name]
        cells = " | ".join(f"{row[key][b]['linear']:.3f} | {row[key][b]['knn']:.3f}" for b in budgets)
        lines.append(f"| {name} | {row['pretrain']['seconds'] if name != 'random init' else 0:.0f} | {cells} |")
    sup = rows["supervised-fashion"]
    lines += ["", "Supervised baseline (same convnet from scratch, same labels): " +
              ", ".join(f"{b}/class {sup[b]['finetune']:.3f}" for b in budgets), ""]
    return "\n".join(lines) + "\n"


def _rgb(x: torch.Tensor) -> torch.Tensor:
    """A float image (C, H, W) in [0, 1] as (H, W, 3) for matplotlib."""
    x = x.detach().float().cpu().clamp(0, 1)
    return (x.expand(3, -1, -1) if x.shape[0] == 1 else x).permute(1, 2, 0)


@torch.no_grad()
def examples_figure(methods: dict, data: dict, path: Path) -> None:
    """Strips: a grey and a colour clip with segmentation; temporal-order tuples; colourisation pointers;
    mask propagation; egomotion pairs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    clips, color = data["gray_test"], data["color_test"]
    seg_colors = torch.tensor([[0.0, 0, 0], [1, 0.6, 0], [0, 0.7, 1], [0.5, 1, 0.5]])
    seg = lambda s: seg_colors[s.long()].permute(2, 0, 1)
    rows: list[tuple[str, list[torch.Tensor]]] = [
        ("grey clip", [clips.clips[0, t] / 255 for t in range(8)]),
        ("colour clip", [color.clips[0, t] / 255 for t in range(8)]),
        ("segmentation", [seg(color.segmentation[0, t]) for t in range(8)])]
    tuples = methods["temporal-order"].examples(clips.batch(torch.arange(8)))
    rows.append(("order: b / mid / d", [torch.cat([tuples["first"][i], tuples["middle"][i], tuples["last"][i]], -1)
                                         for i in range(4)]))
    ex = methods["tracking-colorization"].examples(color.batch(torch.arange(8)))
    for key in ("reference", "target_gray", "predicted_colors", "true_colors", "attention_of_brightest_cell"):
        rows.append((key.replace("_", " "), [ex[key][i] for i in range(8)]))
    tracker = methods["tracking-colorization"].eval()
    frames = color.batch(torch.arange(1)).float() / 255
    predicted = propagate_masks(lambda r, t: tracker.attention(r, t), frames, color.segmentation[:1, 0], 3, "first")
    rows.append(("propagated masks", [seg(predicted[0, t]) for t in range(8)]))
    ego = data["ego_train"]
    firsts = [int((ego.motion == k).nonzero()[0, 0]) for k in range(len(MOTIONS))]
    rows.append(("ego: before|after " + "/".join(m[0] for m in MOTIONS),
                 [torch.cat([ego.frames[i, 0], ego.frames[i, 1]], -1).float() / 255 for i in firsts]))
    fig, axes = plt.subplots(len(rows), 8, figsize=(16, 2 * len(rows)))
    for r, (title, images) in enumerate(rows):
        for c in range(8):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(images):
                ax.imshow(_rgb(images[c]), interpolation="nearest")
        axes[r, 0].set_title(title, loc="left", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=60)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets, to check the script runs")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    out = args.out or (Path("/tmp/sequences-quick") if args.quick else Path(__file__).parent / "results")
    run(QUICK if args.quick else FULL, out, args.threads)
    print(f"wrote {out}/sequences.json, sequences.md, sequences_examples.png", file=sys.stderr)


if __name__ == "__main__":
    main()
