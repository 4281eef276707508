"""Recipe tuning for the image methods: short pretraining runs of a few candidate settings per method,
scored on a validation split of Fashion-MNIST's train part, never on its test set.

The 60,000 train images are split once (`tuning_split`): `VALIDATION_PER_CLASS` images of each class,
drawn with `VALIDATION_SEED`, form the validation set; the rest is the pretraining pool and the labeled
budget of the probes. Each trial (a method and a dict of Config overrides, `{}` being the method's
defaults) pretrains for the same wall-clock budget (epochs from a timed calibration of that trial's
training step, as `selfsup.bench` does; a trial that changes only cost-neutral options such as the
temperature or learning rate reuses the default trial's epochs instead), then scores a linear probe
and kNN with 100 labels per class over 2 label draws on the validation images. The test images are not read at all.

Results are written per trial (`OUT/tuning/METHOD/TRIAL.json`), so the log can be built over several
sittings; `OUT/tuning.md` and `OUT/tuning.json` list every trial and the winner per method. Winners are
made the methods' defaults by hand, in their Config, with a docstring line pointing here.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from selfsup.api import pretrain
from selfsup.bench import calibrate, epochs_within
from selfsup.data.sources import load_dataset
from selfsup.data.splits import held_out_at, stratified_take
from selfsup.evaluate.budgets import label_sweep, summarize
from selfsup.methods.base import METHODS
from selfsup.utils import atomic_write_text, load_average

TUNING_DATA = "fashion-mnist"
VALIDATION_PER_CLASS = 500
VALIDATION_SEED = 4242  # not the test-set seed: a different draw, from the train part only
SCORE_BUDGET = 100  # labels per class of the validation probes
SCORE_SEEDS = (0, 1)
# A candidate replaces the default only if it beats it by this much on the validation linear probe. A low bar:
# a trial's two label draws differ by a median 0.7 points, so gains under a point are suggestive, not proven.
MIN_GAIN = 0.005

# The candidates per method: the current default first, then one change at a time (what the papers and the
# peer libraries tune first: temperature, learning rate, momentum, mask ratio, encoder width).
WIDE = {"batch_norm": True, "widths": [64, 64, 128]}
GRID: dict[str, list[dict]] = {
    "simclr": [{}, {"temperature": 0.2}, {"temperature": 0.1}, {"lr": 3e-3}],
    "mocov2": [{}, {"encoder_kwargs": WIDE}, {"temperature": 0.1}, {"key_momentum": 0.996}, {"lr": 0.06}],
    "byol": [{}, {"lr": 3e-3}, {"base_tau": 0.99}, {"encoder_kwargs": WIDE}],
    "vicreg": [{}, {"lr": 3e-3}, {"expander_dim": 1024}],
    "barlow-twins": [{}, {"lr": 3e-3}, {"lambd": 0.02}, {"projector_dim": 1024}],
    "rotation": [{}, {"lr": 3e-3}],
    "mae": [{}, {"mask_ratio": 0.5}, {"lr": 2e-3}],
}


def tuning_split(train: Any) -> tuple[Any, Any]:
    """(pool, validation) of Fashion-MNIST's train part: the validation images never enter the pool."""
    index = stratified_take(train.labels, per_class=VALIDATION_PER_CLASS,
                            generator=torch.Generator().manual_seed(VALIDATION_SEED))
    held = held_out_at(train, index, f"{VALIDATION_PER_CLASS} per class for recipe validation", VALIDATION_SEED)
    return held.rest, held.test


def trial_name(options: dict) -> str:
    if not options:
        return "default"
    return ",".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in sorted(options.items()))


def trial_path(out: Path, method: str, options: dict) -> Path:
    safe = trial_name(options).replace("/", "_").replace('"', "").replace(" ", "")
    return out / "tuning" / method / f"{safe}.json"


# Options that change what a training step computes but not what it costs. Separate calibrations gave
# trials that differ only in these 12 to 16 epochs of the same budget (benchmarks/results/tuning.md), a
# spread as large as the differences being measured, so such trials reuse the default trial's epochs.
COST_NEUTRAL = frozenset({"lr", "temperature", "key_momentum", "base_tau", "lambd"})


def default_trial_epochs(out: Path, method: str, options: dict, minutes: float) -> int | None:
    """The epochs of `method`'s default trial at the same budget, for a trial whose options leave the step's
    cost unchanged; None when the trial must calibrate its own (it changes the cost, or no default ran)."""
    if not options or not set(options) <= COST_NEUTRAL:
        return None
    path = trial_path(out, method, {})
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record["epochs"] if record["minutes_budget"] == minutes and not record["quick"] else None


def run_trial(method: str, options: dict, minutes: float, pool: Any, validation: Any, out: Path,
              quick: bool = False) -> dict:
    """Pretrain `method` with `options` for `minutes` on `pool`; linear probe and kNN on `validation`."""
    cls = METHODS.get(method)
    batch_size = min(cls.default_batch_size, len(pool))
    reused = None if quick else default_trial_epochs(out, method, options, minutes)
    if reused is not None:
        timing, epochs = {"epochs_from": "default trial"}, reused
    else:
        timing = calibrate(method, pool, batch_size, options=options)
        epochs = 1 if quick else epochs_within(minutes, timing["seconds_per_step"], len(pool) // batch_size)
    load_before, t0 = load_average(), time.perf_counter()
    result = pretrain(method, data=TUNING_DATA, pool=pool, epochs=epochs, options=options, monitor=False,
                      run_dir=out / "runs" / "tuning" / method / trial_path(out, method, options).stem,
                      train={"progress_bar": False}, overwrite=True)
    pretrain_s = time.perf_counter() - t0
    budget = 5 if quick else SCORE_BUDGET
    rows = label_sweep(result.method.eval(), pool, validation, (budget,), SCORE_SEEDS, ("linear", "knn"))
    scores = {s["protocol"]: s["mean"] for s in summarize(rows)}
    return {"method": method, "options": options, "trial": trial_name(options), "minutes_budget": minutes,
            "epochs": epochs, "pretrain_seconds": pretrain_s, "calibration": timing, "rows": rows,
            "validation": {"images": len(validation), "labels_per_class": budget, "seeds": list(SCORE_SEEDS)},
            "linear": scores.get("linear"), "knn": scores.get("knn"), "load_average_before": load_before,
            "load_average_after": load_average(), "quick": quick}


def run_tuning(methods: Iterable[str] | None = None, out: str | Path = "benchmarks/results", minutes: float = 3.0,
               quick: bool = False, force: bool = False) -> dict:
    """Every trial of `methods` (default: all in GRID) not done yet, then the log rebuilt from disk."""
    out = Path(out)
    train = load_dataset(TUNING_DATA).train
    pool, validation = tuning_split(train)
    if quick:  # a smoke run: a small pool and validation set, one epoch, the first two candidates
        pool = pool.subset(torch.arange(0, len(pool), max(1, len(pool) // 600)))
        validation = validation.subset(torch.arange(0, len(validation), max(1, len(validation) // 300)))
    for method in methods or GRID:
        for options in GRID[method][: 2 if quick else None]:
            path = trial_path(out, method, options)
            if path.exists() and not force:
                print(f"{method} {trial_name(options)}: done already", flush=True)
                continue
            print(f"{method} {trial_name(options)}: pretraining for {minutes:g} min ...", flush=True)
            record = run_trial(method, options, minutes, pool, validation, out, quick)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(record, indent=2) + "\n")
            print(f"  linear {100 * record['linear']:.1f}, kNN {100 * record['knn']:.1f} "
                  f"({record['epochs']} epochs)", flush=True)
    return build_log(out)


def winner(trials: list[dict]) -> dict:
    """The trial with the best validation linear probe (kNN breaks ties), if it beats the default by MIN_GAIN;
    otherwise the default."""
    best = max(trials, key=lambda t: (round(t["linear"], 4), round(t["knn"], 4), t["trial"] == "default"))
    default = next((t for t in trials if t["trial"] == "default"), None)
    if default is not None and round(best["linear"] - default["linear"], 4) < MIN_GAIN:
        return default
    return best


def build_log(out: Path) -> dict:
    trials = [json.loads(p.read_text()) for p in sorted((out / "tuning").glob("*/*.json"))]
    methods: dict[str, list[dict]] = {}
    for t in trials:
        methods.setdefault(t["method"], []).append(t)
    lines = [f"Recipe tuning on a validation split of Fashion-MNIST's train part ({VALIDATION_PER_CLASS} images per "
             f"class, seed {VALIDATION_SEED}; the test images are not read). Each trial pretrains on the remaining "
             f"pool for the same wall-clock budget, then a linear probe and kNN with {SCORE_BUDGET} labels per class "
             f"(mean of {len(SCORE_SEEDS)} label draws) score it on the validation images. Made by "
             f"`python benchmarks/tuning.py` ({torch.get_num_threads()} threads, torch {torch.__version__}).\n",
             "| method | trial | budget | epochs | labels per class | val linear | val kNN | load avg before → after | winner |",
             "|---|---|---|---|---|---|---|---|---|"]
    winners = {}
    for method, ts in methods.items():
        best = winner(ts)
        winners[method] = best["trial"]
        for t in ts:
            lines.append(f"| {method} | {t['trial']} | {t['minutes_budget']:g} min | {t['epochs']} | "
                         f"{t['validation']['labels_per_class']} | {100 * t['linear']:.1f} | {100 * t['knn']:.1f} | {t['load_average_before'][0]} → "
                         f"{t['load_average_after'][0]} | {'**yes**' if t is best else ''} |")
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "tuning.md", text)
    atomic_write_text(out / "tuning.json", json.dumps({"machine": platform.platform(), "winners": winners,
                                                       "trials": trials}, indent=2) + "\n")
    return {"winners": winners, "table": text}
