"""The lecture notes' claims, each measured over >= 3 seeds and reported whether it holds or not.

Usage: python benchmarks/claims.py [--claims a b ...] [--seeds 0 1 2] [--out benchmarks/results] [--quick]
Results: OUT/claims/CLAIM-VARIANT-seedS.json per item (written when done, skipped when present: stop and
rerun at will), then OUT/claims.md and OUT/claims.json rebuilt from every item file. The verdicts are
computed from the numbers (`selfsup.claims`): "holds", "does not hold", or "within noise" when the
difference of means is smaller than the larger std over seeds.

Each seed is one independent repetition: its own pretraining pool draw and initialisation, and its own
label draw (the same draw for every variant of that seed). Hyperparameters of every protocol are chosen on
a validation split of that seed's labels (`selfsup.evaluate.tuning`). Accuracy is on the full test sets:
Fashion-MNIST's 10,000 test images; MNIST-5k's 1,000 held-out digits (`held_out_test`). Budgets, scaled
so each item takes about 1-3 minutes on 2 CPU cores (Fashion-MNIST pools drawn from its 60,000 train images):

(a) RotNet vs supervised on 1,000 labels: `selfsup.demo.run_setting` per seed (RotNet 5 epochs on a
    10,000-image Fashion-MNIST pool; 10 epochs on MNIST-5k's 3,000-image pool; 100 labels per class). Rows:
    the notebook's protocol, linear probe (conv2), fine-tuning, supervised, random init. The best of linear
    probe / fine-tuning (by mean) and the notebook row are each compared with supervised.
(b) The SSL advantage shrinks with labels: one RotNet per seed, 3 epochs on the 60,000-image pool (shared by
    the seed's three budget items); at 10, 100 and 1000 labels per class the best of linear probe (conv2) /
    fine-tuning (by mean) minus supervised, paired per seed; fine-tuning and supervised at most 1,500 steps of
    64 (the method table's cap; 600 until the supervised network was found short at 1,000 labels per class).
    Holds if the advantage decreases at each step.
(c) MoCo v2 vs SimCLR: both 10 epochs on a 20,000-image pool at batch 256; linear probe and kNN at 100
    labels per class.
(d) SimCLR projection head mlp > linear > none: as (c), options {"head": ...}; linear probe at 100 labels per
    class decides (kNN shown).
(e) RotNet 4 rotations vs 2 and 8: 3 epochs on a 20,000-image pool (8 rotations see twice the images of 4 per
    epoch, as in the paper's equal-epoch comparison); linear probe on conv2 at 100 labels per class.
(f) Jigsaw vs relative patch location, transfer: each pretrained on a 20,000-image Fashion-MNIST pool for its
    default epochs (jigsaw 20, patch-location 40: about the same wall clock here); linear probe and kNN on
    MNIST-5k at 100 labels per class.
--quick: a smoke run (pools of 512, 1 epoch, 5 labels per class, evaluation subsets); not evidence. Its
(a) keeps the demo's fine-tuning steps (about a minute per item); the others take seconds.
--threads N: torch threads (default: torch's own choice).
"""
from __future__ import annotations

import argparse
import functools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from selfsup.api import load_run, pretrain
from selfsup.bench import smoke_subsets
from selfsup.claims import (Claim, Scores, beats, best_metric, build_report, paired_difference, run_items,
                            shrinking)
from selfsup.data.sources import load_dataset
from selfsup.data.splits import held_out_test
from selfsup.evaluate.budgets import label_sweep
from selfsup.runs import RunFolder

NOTEBOOK = "the notebook: 81.00% vs 78.67%"


@dataclass(frozen=True)
class Budgets:
    """Everything that sizes the measurements; `QUICK` shrinks it for a smoke run."""

    quick: bool = False
    pool: int = 20_000  # Fashion-MNIST pretraining pool of (c)-(f)
    batch_size: int = 256
    contrastive_epochs: int = 10  # (c), (d)
    rotnet_epochs: int = 3  # (e)
    shrink_pool: int | None = None  # (b): None = all 60,000 train images
    shrink_epochs: int = 3  # (b)
    shrink_labels: tuple[int, ...] = (10, 100, 1000)  # (b), labels per class
    shrink_finetune: dict = field(default_factory=lambda: {"max_steps": 1500})  # (b): the method table's cap
    labels: int = 100  # labels per class of (c)-(f)
    context_epochs: dict = field(default_factory=lambda: {"jigsaw": 20, "patch-location": 40})  # (f)
    demo_pool: dict | None = None  # (a): None = selfsup.demo's settings


QUICK = Budgets(quick=True, pool=512, contrastive_epochs=1, rotnet_epochs=1, shrink_pool=512, shrink_epochs=1,
                shrink_labels=(2, 5, 10), shrink_finetune={"min_steps": 10, "max_steps": 10}, labels=5,
                context_epochs={"jigsaw": 1, "patch-location": 1}, demo_pool={"labels": 5, "pool": 512, "epochs": 1})


# --- data and pretraining ----------------------------------------------------------------------------------
def shrink(train: Any, test: Any, quick: bool) -> tuple[Any, Any]:
    """The evaluation data, or in quick mode about 600 train items (every k-th) and the first 300 test items."""
    return smoke_subsets(train, test) if quick else (train, test)


@functools.lru_cache(maxsize=2)
def fashion(quick: bool) -> tuple[Any, Any]:
    """Fashion-MNIST (train 60,000, test 10,000)."""
    data = load_dataset("fashion-mnist")
    return shrink(data.train, data.test, quick)


@functools.lru_cache(maxsize=2)
def mnist5k(quick: bool) -> tuple[Any, Any]:
    """MNIST-5k: the rest and the 1,000 held-out test digits."""
    held = held_out_test(load_dataset("mnist5k"))
    return shrink(held.rest, held.test, quick)


def same_run(run: RunFolder, method: str, epochs: int, pool_size: int | None, options: dict) -> bool:
    """Whether `run` holds finished weights of this very pretraining (so it can be reused)."""
    if not run.weights.exists():
        return False
    record = run.read_config()
    config = record.get("method_config", {})
    return (record.get("method") == method and record.get("train", {}).get("epochs") == epochs
            and (pool_size is None or record.get("data", {}).get("pool_size") == pool_size)
            and all(config.get(k) == v for k, v in options.items()))


def pretrained(method: str, seed: int, run_dir: Path, b: Budgets, epochs: int, pool_size: int | None,
               options: dict | None = None, reuse: bool = False) -> tuple[Any, dict]:
    """A method pretrained on Fashion-MNIST (or, with `reuse`, loaded from `run_dir` when it holds this very
    pretraining), in eval mode, and what to record of its pretraining."""
    options = options or {}
    run = RunFolder(run_dir)
    if reuse and same_run(run, method, epochs, pool_size, options):
        record = run.read_config()
        return load_run(run_dir), {"pretrained_in_this_item": False, "run_dir": str(run_dir), "epochs": epochs,
                                   "pool": record["data"]["pool_size"], "pretext": record.get("final_metrics", {})}
    t0 = time.perf_counter()
    # overwrite: a half-finished earlier attempt is cleared under the run folder's lock, so a second
    # process on the same item is refused instead of deleting the folder under the first one
    result = pretrain(method, data="fashion-mnist", epochs=epochs, pool_size=pool_size, seed=seed,
                      batch_size=b.batch_size, run_dir=run_dir, options=options, overwrite=True,
                      train={"progress_bar": False, "knn_every": 0})
    pretext = {k: v for k, v in result.final.items() if k.startswith("train/") and "step" not in k}
    return result.method.eval(), {"pretrained_in_this_item": True, "run_dir": str(run_dir), "epochs": epochs,
                                  "pool": pool_size, "pretrain_seconds": time.perf_counter() - t0,
                                  "images_per_s": result.images_per_s, "pretext": pretext}


def probe(method: Any, data: tuple[Any, Any], labels: int, seed: int, protocols: tuple[str, ...],
          upto: str | None = None, finetune_kwargs: dict | None = None) -> tuple[dict, dict]:
    """{protocol: test accuracy} and {protocol: chosen hyperparameters} at `labels` per class, label draw `seed`."""
    train, test = data
    rows = label_sweep(method, train, test, budgets=(labels,), seeds=(seed,), protocols=protocols, upto=upto,
                       finetune_kwargs=finetune_kwargs)
    return {r["protocol"]: r["acc"] for r in rows}, {r["protocol"]: r["params"] for r in rows}


def pretrain_and_probe(method: str, seed: int, run_dir: Path, b: Budgets, epochs: int, data: tuple[Any, Any],
                       protocols: tuple[str, ...], upto: str | None = None, options: dict | None = None) -> dict:
    """One item of (c)-(f): pretrain on a Fashion-MNIST pool, then frozen-feature protocols on `data`."""
    model, info = pretrained(method, seed, run_dir, b, epochs, b.pool, options)
    scores, params = probe(model, data, b.labels, seed, protocols, upto)
    return {"scores": scores, "details": info | {"params": params, "labels_per_class": b.labels,
                                                 "options": options or {}, "upto": upto}}


# --- the claims ----------------------------------------------------------------------------------------------
def claim_a(b: Budgets, runs: Path) -> Claim:
    from selfsup.demo import SETTINGS, DemoSetting, run_setting
    settings = {s.data: s for s in SETTINGS}
    if b.demo_pool:
        q = b.demo_pool
        settings = {d: DemoSetting(d, q["pool"], q["labels"], q["epochs"]) for d in settings}

    def run(variant: str, seed: int) -> dict:
        result = run_setting(settings[variant], seed, runs / "a", False, None)  # None: tuned on this seed's labels
        record = result[0] if isinstance(result, tuple) else result
        return {"scores": dict(record["acc"]), "details": {k: v for k, v in record.items() if k != "acc"}}

    def judge(scores: Scores) -> list:
        checks = []
        for data in settings:
            best = best_metric(scores, data, ("linear", "finetune"))
            checks.append(beats(scores, (data, best), (data, "supervised"),
                                f"{data}: best RotNet protocol ({best}) > supervised"))
            checks.append(beats(scores, (data, "notebook"), (data, "supervised"), f"{data}: notebook row > supervised"))
        return checks

    described = "; ".join(f"{s.data}: RotNet {s.epochs} epochs on a pool of {s.pool_size or 'all remaining'} "
                          f"unlabeled images, {s.labels_per_class} labels per class" for s in settings.values())
    return Claim("a", f"RotNet pretraining beats supervised training on the same labels ({NOTEBOOK})",
                 f"`selfsup.demo.run_setting` per seed. {described}; test: Fashion-MNIST's 10,000 test images, "
                 "MNIST-5k's 1,000 held-out digits. Rows: the notebook's protocol (conv1-2 frozen + dense, no tuning), "
                 "linear probe (conv2), fine-tuning (all layers), supervised (same network from random init, same "
                 "augmentation, grid and steps as fine-tuning), random init (linear probe, conv2). Hyperparameters "
                 "tuned on each seed's validation split. Compared: the best of linear probe / fine-tuning (by mean), "
                 "and the notebook row, each against supervised.",
                 list(settings), run, judge, ["notebook", "linear", "finetune", "supervised", "random_init_linear"])


def claim_b(b: Budgets, runs: Path) -> Claim:
    def run(variant: str, seed: int) -> dict:
        model, info = pretrained("rotation", seed, runs / f"b-rotation-seed{seed}", b, b.shrink_epochs,
                                 b.shrink_pool, reuse=True)  # one RotNet per seed for all its budgets
        data, labels = fashion(b.quick), int(variant)
        linear, p1 = probe(model, data, labels, seed, ("linear",), upto="conv2")
        trained, p2 = probe(model, data, labels, seed, ("finetune", "supervised"), finetune_kwargs=b.shrink_finetune)
        return {"scores": linear | trained, "details": info | {"params": p1 | p2, "labels_per_class": labels,
                                                               "finetune_kwargs": b.shrink_finetune}}

    variants = [str(n) for n in b.shrink_labels]

    def judge(scores: Scores) -> list:
        labels, advantages = [], []
        for v in variants:
            best = best_metric(scores, v, ("linear", "finetune"))
            advantages.append(paired_difference(scores, (v, best), (v, "supervised")))
            labels.append(f"{v} labels/class ({best} − supervised)")
        return shrinking(labels, advantages, "SSL advantage")

    pool = f"{b.shrink_pool:,}-image" if b.shrink_pool else "60,000-image"
    return Claim("b", "The self-supervised advantage over supervised shrinks as labels per class grow "
                      f"({' → '.join(variants)})",
                 f"Fashion-MNIST. One RotNet per seed, {b.shrink_epochs} epochs on the {pool} pool; per budget: linear "
                 f"probe (conv2), fine-tuning (all layers) and supervised (same network from random init; fine-tuning "
                 f"and supervised capped at {b.shrink_finetune.get('max_steps')} steps of 64), tuned on validation. "
                 "The advantage is the best of linear probe / fine-tuning (by mean) minus supervised, paired per seed; "
                 "the claim holds if it decreases at each step.",
                 variants, run, judge, ["linear", "finetune", "supervised"])


# The claim is about the papers' recipes: MoCo v2's tuned default temperature (0.1) is not the paper's.
PAPER_TEMPERATURE = {"mocov2": {"temperature": 0.2}}


def claim_c(b: Budgets, runs: Path) -> Claim:
    def run(variant: str, seed: int) -> dict:
        return pretrain_and_probe(variant, seed, runs / f"c-{variant}-seed{seed}", b, b.contrastive_epochs,
                                  fashion(b.quick), ("linear", "knn"), options=PAPER_TEMPERATURE.get(variant))

    def judge(scores: Scores) -> list:
        return [beats(scores, ("mocov2", m), ("simclr", m)) for m in ("linear", "knn")]

    return Claim("c", f"MoCo v2 does at least as well as SimCLR at the same small batch ({b.batch_size}) and epochs",
                 f"Fashion-MNIST: each pretrained {b.contrastive_epochs} epochs on a {b.pool:,}-image pool at batch "
                 f"{b.batch_size} (their default configs, MoCo v2 at the paper's temperature 0.2); linear probe and "
                 f"kNN on the frozen encoder at {b.labels} labels per class, tuned on validation. Compared: MoCo v2 > "
                 "SimCLR on each.",
                 ["simclr", "mocov2"], run, judge, ["linear", "knn"])


def claim_d(b: Budgets, runs: Path) -> Claim:
    def run(variant: str, seed: int) -> dict:
        return pretrain_and_probe("simclr", seed, runs / f"d-{variant}-seed{seed}", b, b.contrastive_epochs,
                                  fashion(b.quick), ("linear", "knn"), options={"head": variant})

    def judge(scores: Scores) -> list:
        return [beats(scores, ("mlp", "linear"), ("linear", "linear"), "mlp head > linear head (linear probe)"),
                beats(scores, ("linear", "linear"), ("none", "linear"), "linear head > no head (linear probe)")]

    return Claim("d", "For SimCLR, a nonlinear projection head beats a linear one, which beats no head",
                 f"Fashion-MNIST: SimCLR with options {{\"head\": \"mlp\" | \"linear\" | \"none\"}}, each "
                 f"{b.contrastive_epochs} epochs on a {b.pool:,}-image pool at batch {b.batch_size}; the encoder's "
                 f"features (before the head) by linear probe (decides, as in the paper's Figure 8) and kNN (shown) "
                 f"at {b.labels} labels per class.",
                 ["mlp", "linear", "none"], run, judge, ["linear", "knn"])


def claim_e(b: Budgets, runs: Path) -> Claim:
    def run(variant: str, seed: int) -> dict:
        return pretrain_and_probe("rotation", seed, runs / f"e-{variant}-seed{seed}", b, b.rotnet_epochs,
                                  fashion(b.quick), ("linear",), upto="conv2",
                                  options={"rotations": int(variant.removeprefix("rot"))})

    def judge(scores: Scores) -> list:
        return [beats(scores, ("rot4", "linear"), (other, "linear")) for other in ("rot2", "rot8")]

    return Claim("e", "RotNet with 4 rotations does at least as well as with 2 or 8",
                 f"Fashion-MNIST: RotNet with rotations 2 / 4 / 8, each {b.rotnet_epochs} epochs on a {b.pool:,}-image "
                 f"pool (equal epochs: 8 rotations see twice the images of 4); linear probe on conv2 at {b.labels} "
                 "labels per class, tuned on validation. Compared: 4 > 2 and 4 > 8.",
                 ["rot2", "rot4", "rot8"], run, judge, ["linear"])


def claim_f(b: Budgets, runs: Path) -> Claim:
    def run(variant: str, seed: int) -> dict:
        return pretrain_and_probe(variant, seed, runs / f"f-{variant}-seed{seed}", b, b.context_epochs[variant],
                                  mnist5k(b.quick), ("linear", "knn"))

    def judge(scores: Scores) -> list:
        return [beats(scores, ("jigsaw", m), ("patch-location", m)) for m in ("linear", "knn")]

    epochs = ", ".join(f"{k} {v}" for k, v in b.context_epochs.items())
    return Claim("f", "Jigsaw features transfer better than relative-patch-location features",
                 f"Pretrained on a {b.pool:,}-image Fashion-MNIST pool for each method's default epochs ({epochs}); "
                 f"transferred to MNIST-5k (test: its 1,000 held-out digits): linear probe and kNN on the frozen "
                 f"encoder (whole images) at {b.labels} labels per class. Compared: jigsaw > patch-location on each.",
                 ["jigsaw", "patch-location"], run, judge, ["linear", "knn"])


CLAIMS = {"a": claim_a, "b": claim_b, "c": claim_c, "d": claim_d, "e": claim_e, "f": claim_f}


def make_claims(out: Path, quick: bool = False) -> dict[str, Claim]:
    b = QUICK if quick else Budgets()
    runs = Path(out) / "claims" / "runs"
    claims = {key: make(b, runs) for key, make in CLAIMS.items()}
    if quick:
        for key, claim in claims.items():
            subsets = "" if key == "a" else " Evaluated on about 600 train and the first 300 test items."
            claim.setting = f"QUICK SMOKE RUN, not evidence.{subsets} " + claim.setting
    return claims


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--claims", nargs="+", choices=list(CLAIMS), default=list(CLAIMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--quick", action="store_true", help="a smoke run with tiny budgets (not evidence)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    claims = make_claims(a.out, a.quick)
    t0 = time.perf_counter()
    run_items([claims[k] for k in a.claims], a.seeds, a.out, a.quick)
    command = "python benchmarks/claims.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report = build_report(claims.values(), a.out, a.quick, command.strip())
    print(report["markdown"])
    print(f"total {time.perf_counter() - t0:.0f} s")
    return report


if __name__ == "__main__":
    main()
