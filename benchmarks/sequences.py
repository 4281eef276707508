"""Benchmark of the sequence and motion methods (issues 6 and 11) on 2 CPU cores, 3 pretraining seeds.

    .venv/bin/python benchmarks/sequences.py            # the full run; writes benchmarks/results/sequences.*
    .venv/bin/python benchmarks/sequences.py --quick    # a smoke run (tiny budgets) into /tmp/sequences-quick

Resumable: every finished unit (one method pretrained with one seed and evaluated with its random init of
that seed; the supervised rows of one encoder) is written at once into `sequences.json` (weights as safetensors under
`sequences_runs/`); a rerun with the same configuration skips what is done. `--fresh` starts over.

Rows:
- temporal-order, cpc-sequence, tracking-colorization: pretrained on moving-sprites clips (Fashion-MNIST
  train objects), evaluated on few-label frame classification: object-centred 48x48 frames from held-out
  clips of Fashion-MNIST *test* objects, a linear probe and kNN on frozen features with 10 and 100 labelled
  frames per class, each against its own random-init encoder (the same architecture untrained, same seed,
  same probe) and a supervised baseline (that encoder trained from scratch on the same labels,
  `selfsup.evaluate.supervised_baseline`): temporal-order's convnet has BatchNorm (the authors' model),
  cpc-sequence's has not, tracking-colorization's stops at conv2 (the blocks its loss trains).
- temporal-order also: its pretext accuracy on tuples of the held-out clips, against the class prior.
- tracking-colorization also: mask IoU (DAVIS J) of propagating the first frame's masks through held-out
  colour clips with the learned attention, no further training, against copying the first-frame mask
  and against the attention of a random-init network.
- egomotion vs egomotion-invariant (the paper's slowness baseline) and random init: pretrained on view
  pairs of the simulated agent, evaluated on Fashion-MNIST test images with 10 / 100 labels per class.

Fairness: the linear probe, kNN and the supervised baseline choose their hyperparameters on a validation
split of each draw's labels (`selfsup.evaluate.tuning`), never the test set. Every pretrained or random-init
encoder of each of `seeds` seeds is probed on the same `draws` label draws per budget (`draw_budget`);
the supervised baseline is trained once per draw. Tables give mean ± sample std over all of them (n stated).
Every method gets the same optimiser settings as `selfsup pretrain` (its Config, cosine schedule) and a
fixed number of steps; every timing is stored with the load average.
Budget: the full run is sized for about 35 minutes on 2 quiet cores, all 3 seeds (see FULL's comment).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from selfsup.bench import resumable_results
from selfsup.data.base import ImageData
from selfsup.data.egomotion import MOTIONS, make_egomotion_pairs
from selfsup.data.sources import fashion_mnist
from selfsup.data.splits import stratified_take
from selfsup.data.sprites import make_sprite_clips, object_frames
from selfsup.evaluate.budgets import label_sweep, tuned_block_protocols
from selfsup.evaluate.features import extract_features
from selfsup.evaluate.finetune import fresh_copy
from selfsup.evaluate.propagation import propagate_masks, tracking_iou
from selfsup.evaluate.sweep import draw_budget, mean_and_std, summarize
from selfsup.evaluate.tuning import KNN_GRID, LINEAR_GRID
from selfsup.methods.base import build_method
from selfsup.methods.temporal_order import order_tuples
from selfsup.runs import load_weights, save_weights
from selfsup.train import train_steps
from selfsup.utils import atomic_write_text, load_average
from selfsup.views import to_float

# Steps per method: about the same wall time each for the three sequence methods (a temporal-order step sees
# 192 frames, CPC 256, colourisation 64, egomotion 256 images of 28x28). The first full run (250 / 180 / 300
# steps) pretrained each method for only 15-19 s a seed, and temporal order stayed at its class prior; the
# diagnosis (benchmarks/sequences_diagnose.py, one seed) learned the pretext at 1,500 steps (held-out tuples
# 0.87 against the prior 0.75). At the first run's 2-thread timings (temporal-order 0.06 s a step, CPC 0.10,
# colourisation 0.06, egomotion 0.06) these counts pretrain about 2 minutes per sequence method and seed,
# about 20 minutes for 3 seeds; the tuned supervised rows and probes took about 15 minutes in the first run.
FULL = {"train_clips": 2000, "test_clips": 400, "ego_pairs": 20000, "fashion_pool": 20000, "fashion_test_per_class": 200,
        "steps": {"temporal-order": 2000, "cpc-sequence": 1200, "tracking-colorization": 2000, "egomotion": 500,
                  "egomotion-invariant": 500},
        "batch": {"temporal-order": 64, "cpc-sequence": 32, "tracking-colorization": 32, "egomotion": 128,
                  "egomotion-invariant": 128},
        "budgets": [10, 100], "draws": 3, "seeds": 3, "supervised_steps": 100}
QUICK = {"train_clips": 200, "test_clips": 60, "ego_pairs": 1000, "fashion_pool": 1000, "fashion_test_per_class": 20,
         "steps": {name: 5 for name in FULL["steps"]}, "batch": {name: 16 for name in FULL["batch"]},
         "budgets": [10], "draws": 2, "seeds": 2, "supervised_steps": 5}
SEQUENCE_METHODS = ("temporal-order", "cpc-sequence", "tracking-colorization")
EGO_METHODS = ("egomotion", "egomotion-invariant")
PRETRAINING_DATA = {"temporal-order": "gray_train", "cpc-sequence": "gray_train",
                    "tracking-colorization": "color_train", "egomotion": "ego_train", "egomotion-invariant": "ego_train"}
EVALUATION = {name: "frames" for name in SEQUENCE_METHODS} | {name: "fashion" for name in EGO_METHODS}


def frozen_rows(method: Any, pool: ImageData, test: ImageData, cfg: dict) -> list[dict]:
    """Linear probe and kNN on frozen features, each tuned on a validation split of the drawn labels (never the
    test frames): one row per budget, draw ("seed") and protocol. Every encoder sees the same draws."""
    return label_sweep(method, pool, test, cfg["budgets"], range(cfg["draws"]), ("linear", "knn"), tune_every_draw=True)


def supervised_rows(method: Any, pool: ImageData, test: ImageData, cfg: dict) -> list[dict]:
    """The same encoder trained from scratch on the same labels, its lr and weight decay tuned on the same kind
    of validation split (the fine-tuning grid), for a fixed number of steps; one run per draw."""
    steps = {"epochs": 1, "min_steps": cfg["supervised_steps"], "max_steps": cfg["supervised_steps"]}
    return label_sweep(method, pool, test, cfg["budgets"], range(cfg["draws"]), ("supervised",),
                       finetune_kwargs=steps, tune_every_draw=True)


@torch.no_grad()
def order_accuracy(method: Any, clips: Any) -> dict[str, float]:
    """Temporal-order pretext accuracy on one tuple per held-out clip, at the training class ratio (against
    always answering "shuffled", the class prior) and on balanced tuples (chance 0.5)."""
    frames = to_float(clips.clips)
    result = {"prior": 1 - method.config.positive_fraction}
    for key, fraction in (("acc", method.config.positive_fraction), ("balanced_acc", 0.5)):
        tuples, labels, _ = order_tuples(frames, fraction, generator=torch.Generator().manual_seed(0),
                                         motion_weighting=method.config.motion_weighting,
                                         min_difference=method.config.min_difference)
        result[key] = (method.logits(tuples).argmax(1) == labels).float().mean().item()
    return result


def block_rows(method: Any, pool: ImageData, test: ImageData, cfg: dict) -> list[dict]:
    """Like `frozen_rows`, with the encoder block read as one more hyperparameter chosen on each draw's
    validation split (`tuned_block_protocols`): a pretext task may train an earlier block better than the
    last one, and the random-init twin gets the same choice. Every block but the first: conv1's 9,216-d maps
    (of 2,304 pixels) made its tuned linear probe 5-10x slower than the other blocks together, and it is the
    block nearest to the pixels. Each block's features are extracted once, for every draw."""
    features = {block: (extract_features(method, pool, upto=block), extract_features(method, test, upto=block))
                for block in method.encoder.block_names[1:]}
    rows = []
    for budget in cfg["budgets"]:
        for draw in range(cfg["draws"]):
            index = draw_budget(pool.labels, budget, draw)
            drawn = {block: (x[index], xt) for block, (x, xt) in features.items()}
            accs, choices = tuned_block_protocols(drawn, pool.labels[index], test.labels, ("linear", "knn"), draw)
            rows += [{"labels_per_class": budget, "seed": draw, "protocol": p, "acc": a, "block": choices[p]["block"]}
                     for p, a in accs.items()]
    return rows


def block_unit(name: str, seed: int, data: dict, cfg: dict, weights: Path) -> dict:
    """`block_rows` of `name`'s seed-`seed` encoder (its saved weights) and of its random-init twin."""
    torch.manual_seed(seed)
    method = build_method(name, data[PRETRAINING_DATA[name]].spec)
    random_init = fresh_copy(method, seed=seed)  # the same initial weights pretrain_unit started from
    load_weights(method, weights / f"{name}-seed{seed}.safetensors")
    pool, test = data[EVALUATION[name]]
    return {"rows": block_rows(method.eval(), pool, test, cfg),
            "random_init_rows": block_rows(random_init.eval(), pool, test, cfg)}


def sprite_data(cfg: dict) -> dict[str, Any]:
    parts = fashion_mnist()
    train, test = parts.train, parts.test
    make = lambda src, n, seed, colors: make_sprite_clips(src.images, src.labels, n, classes=src.classes,
                                                          colors=colors, seed=seed)
    data = {"gray_train": make(train, cfg["train_clips"], 0, False),
            "gray_test": make(test, cfg["test_clips"], 1, False),
            "color_train": make(train, cfg["train_clips"], 2, True),
            "color_test": make(test, cfg["test_clips"], 3, True)}
    data["frames"] = (object_frames(data["gray_train"], frames_per_object=2, name="sprite-frames-pool"),
                      object_frames(data["gray_test"], frames_per_object=1, name="sprite-frames-test"))
    data["ego_train"] = make_egomotion_pairs(train.images, train.labels, cfg["ego_pairs"], classes=train.classes)
    g = torch.Generator().manual_seed(0)
    data["fashion"] = (train.subset(torch.randperm(len(train), generator=g)[:cfg["fashion_pool"]]),
                       test.subset(stratified_take(test.labels, per_class=cfg["fashion_test_per_class"], generator=g)))
    return data


def pretrain_unit(name: str, seed: int, data: dict, cfg: dict, weights: Path) -> dict:
    """Pretrain `name` with `seed` and evaluate it and its random init (the same encoder untrained, same seed,
    fed as the method feeds it: temporal-order's has BatchNorm, tracking-colorization's stops at conv2)."""
    source = data[PRETRAINING_DATA[name]]
    torch.manual_seed(seed)
    method = build_method(name, source.spec)
    random_init = fresh_copy(method, seed=seed)
    unit = {"pretrain": train_steps(method, source, cfg["steps"][name], cfg["batch"][name], seed=seed) | {
        "load_average": load_average(), "steps": cfg["steps"][name], "batch_size": cfg["batch"][name]}}
    save_weights(method, weights / f"{name}-seed{seed}.safetensors")
    unit["rows"] = frozen_rows(method, *data[EVALUATION[name]], cfg)
    unit["random_init_rows"] = frozen_rows(random_init, *data[EVALUATION[name]], cfg)
    if name == "temporal-order":
        unit["pretext"] = order_accuracy(method, data["gray_test"])
    if name == "tracking-colorization":
        unit["tracking"] = {ref: tracking_iou(method, data["color_test"], reference=ref) for ref in ("previous", "first")}
        unit["tracking_random_init"] = tracking_iou(random_init, data["color_test"], reference="first")
    return unit


def run(cfg: dict, out: Path, threads: int, fresh: bool) -> dict:
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    path, weights = out / "sequences.json", out / "sequences_runs"
    weights.mkdir(exist_ok=True)
    results = resumable_results(path, cfg, threads, fresh)
    units = results["units"]
    save = lambda: atomic_write_text(path, json.dumps(results, indent=1))
    t0 = time.perf_counter()
    data = sprite_data(cfg)
    results["data"] = {"seconds": time.perf_counter() - t0, "load_average": load_average()}
    for seed in range(cfg["seeds"]):
        for name in SEQUENCE_METHODS + EGO_METHODS:
            if f"{name}/seed{seed}" not in units:
                units[f"{name}/seed{seed}"] = pretrain_unit(name, seed, data, cfg, weights)
                save()
            print(name, seed, json.dumps(units[f"{name}/seed{seed}"]["pretrain"]), flush=True)
    for seed in range(cfg["seeds"]):
        for name in SEQUENCE_METHODS:
            if f"blocks/{name}/seed{seed}" not in units:
                units[f"blocks/{name}/seed{seed}"] = block_unit(name, seed, data, cfg, weights)
                save()
            print("probed every block of", name, seed, flush=True)
    for key, name, evaluation in (("supervised-frames", "cpc-sequence", "frames"),
                                  ("supervised-frames-bn", "temporal-order", "frames"),
                                  ("supervised-frames-conv2", "tracking-colorization", "frames"),
                                  ("supervised-fashion", "egomotion", "fashion")):
        if key not in units:
            torch.manual_seed(0)
            units[key] = {"rows": supervised_rows(build_method(name, data[PRETRAINING_DATA[name]].spec),
                                                  *data[evaluation], cfg), "load_average": load_average()}
            save()
        print("evaluated", key, flush=True)
    results["wall_seconds_this_run"] = time.perf_counter() - t0
    results["load_average_end"] = load_average()
    save()
    atomic_write_text(out / "sequences.md", markdown(results))
    seed0_figure(data, weights, out / "sequences_examples.png")
    return results


def seed0_figure(data: dict, weights: Path, path: Path) -> None:
    """The examples figure from the seed-0 weights of temporal-order and tracking-colorization."""
    methods = {}
    for name in ("temporal-order", "tracking-colorization"):
        methods[name] = build_method(name, data[PRETRAINING_DATA[name]].spec)
        load_weights(methods[name], weights / f"{name}-seed0.safetensors")
        methods[name].eval()
    examples_figure(methods, data, path)


def rows_of(units: dict, key: str, cfg: dict, field: str = "rows") -> list[dict]:
    """Every row of `key`'s units (one per seed, or the single supervised unit)."""
    if key in units:
        return units[key][field]
    return [row for seed in range(cfg["seeds"]) for row in units[f"{key}/seed{seed}"][field]]


def cells(rows: list[dict], budgets: list[int], protocols: tuple[str, ...] = ("linear", "knn")) -> str:
    stats = {(r["protocol"], r["labels_per_class"]): r for r in summarize(rows)}
    cell = lambda key: "{mean:.3f} ± {std:.3f}".format(**stats[key]) if key in stats else "-"
    return " | ".join(cell((p, b)) for b in budgets for p in protocols)


def mean_std(values: list[float]) -> str:
    return "{:.3f} ± {:.3f}".format(*mean_and_std(values))


def markdown(r: dict) -> str:
    cfg, units = r["config"], r["units"]
    budgets, seeds = cfg["budgets"], range(cfg["seeds"])
    n = cfg["seeds"] * cfg["draws"]
    head = " | ".join(f"lin@{b} | kNN@{b}" for b in budgets)
    pre = lambda name: units[f"{name}/seed0"]["pretrain"]
    lines = ["# Sequences and motion (issues 6 and 11)", "",
             f"{r['threads']} threads ({r['machine']}, torch {r['torch']}); the last run took "
             f"{r['wall_seconds_this_run']:.0f} s (resumed units are not redone), load average at its end "
             f"{r['load_average_end']}. Pretraining steps x batch (seed 0's seconds and load average): " +
             ", ".join(f"{name} {pre(name)['steps']} x {pre(name)['batch_size']} ({pre(name)['seconds']:.0f} s, "
                       f"{pre(name)['load_average']})" for name in SEQUENCE_METHODS + EGO_METHODS) +
             f"; {cfg['train_clips']} sprite clips (8 x 48 x 48), {cfg['ego_pairs']} egomotion view pairs. "
             f"Linear probe and kNN tuned on a validation split of each draw's labels (lr x weight decay "
             f"{len(LINEAR_GRID)} points, k of {[g['k'] for g in KNN_GRID]}); supervised {cfg['supervised_steps']} "
             f"steps, lr and weight decay tuned the same way. Mean ± sample std over {cfg['seeds']} pretraining "
             f"seeds x {cfg['draws']} label draws (n = {n}; supervised: n = {cfg['draws']} draws).", "",
             "## Few-label frame classification", "",
             "Object-centred frames of held-out clips (Fashion-MNIST test objects); labels from training clips.", "",
             f"| encoder | {head} |", "|---|" + "---|---|" * len(budgets)]
    encoders = {"temporal-order": "convnet with BatchNorm, conv3", "cpc-sequence": "convnet, conv3",
                "tracking-colorization": "convnet conv1-conv2"}
    for name in SEQUENCE_METHODS:
        lines.append(f"| {name} | {cells(rows_of(units, name, cfg), budgets)} |")
        lines.append(f"| random init ({encoders[name]}) | {cells(rows_of(units, name, cfg, 'random_init_rows'), budgets)} |")
    for key, label in (("supervised-frames", "supervised (convnet from scratch)"),
                       ("supervised-frames-bn", "supervised (convnet with BatchNorm from scratch)"),
                       ("supervised-frames-conv2", "supervised (conv1-conv2 encoder from scratch)")):
        lines.append(f"| {label} | " + " | ".join(f"{cells(units[key]['rows'], [b], ('supervised',))} | -"
                                                  for b in budgets) + " |")
    lines += ["", "## The same, probing the block that does best on validation", "",
              "The encoder block read (any but the first) is chosen, with the probe's other hyperparameters, on "
              "each draw's validation split (the random-init twin chooses its block the same way); blocks chosen, "
              "over seeds x draws x budgets, in the last column.", "",
              f"| encoder | {head} | blocks chosen |", "|---|" + "---|---|" * len(budgets) + "---|"]
    for name in SEQUENCE_METHODS:
        for label, field in ((name, "rows"), (f"random init ({name}'s encoder)", "random_init_rows")):
            rows = rows_of(units, f"blocks/{name}", cfg, field)
            chosen = Counter(f"{r['protocol']} {r['block']}" for r in rows)
            lines.append(f"| {label} | {cells(rows, budgets)} | {', '.join(f'{k} {v}' for k, v in sorted(chosen.items()))} |")
    pretext = [units[f"temporal-order/seed{s}"]["pretext"] for s in seeds]
    lines += ["", "## Temporal-order pretext accuracy (one tuple per held-out clip)", "",
              "| tuples | accuracy | always 'shuffled' |", "|---|---|---|",
              f"| training ratio ({1 - pretext[0]['prior']:.0%} in order) | {mean_std([p['acc'] for p in pretext])} | "
              f"{pretext[0]['prior']:.3f} |",
              f"| balanced (50% in order) | {mean_std([p['balanced_acc'] for p in pretext])} | 0.500 |", ""]
    tracking = [units[f"tracking-colorization/seed{s}"] for s in seeds]
    lines += ["## Mask propagation (held-out colour clips, first-frame masks given, no training)", "",
              "| tracker | mean J (frames 1-7) |", "|---|---|",
              f"| learned attention, reference = previous frame | {mean_std([t['tracking']['previous']['iou'] for t in tracking])} |",
              f"| learned attention, reference = first frame | {mean_std([t['tracking']['first']['iou'] for t in tracking])} |",
              f"| random-init attention, reference = first frame | {mean_std([t['tracking_random_init']['iou'] for t in tracking])} |",
              f"| copy the first-frame mask | {tracking[0]['tracking']['first']['copy_first_iou']:.3f} |", "",
              "## Ego-motion (Fashion-MNIST test images, labels from Fashion-MNIST train)", "",
              f"| encoder | {head} |", "|---|" + "---|---|" * len(budgets)]
    for name in EGO_METHODS:
        lines.append(f"| {name} | {cells(rows_of(units, name, cfg), budgets)} |")
    lines.append(f"| random init (egomotion's convnet) | {cells(rows_of(units, 'egomotion', cfg, 'random_init_rows'), budgets)} |")
    lines.append("| supervised (same convnet from scratch) | " + " | ".join(
        f"{cells(units['supervised-fashion']['rows'], [b], ('supervised',))} | -" for b in budgets) + " |")
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
    parser.add_argument("--fresh", action="store_true", help="ignore earlier results in --out and start over")
    args = parser.parse_args(argv)
    out = args.out or (Path("/tmp/sequences-quick") if args.quick else Path(__file__).parent / "results")
    run(QUICK if args.quick else FULL, out, args.threads, args.fresh)
    print(f"wrote {out}/sequences.json, sequences.md, sequences_examples.png", file=sys.stderr)


if __name__ == "__main__":
    main()
