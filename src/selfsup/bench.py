"""`selfsup bench`: the reference table of the image methods, with a random-init and a supervised row for
every encoder configuration.

Each method is pretrained on its default data (Fashion-MNIST: the full 60,000-image train part, labels
unused; the colour methods: the `photos` patches, evaluated by transfer) for an equal wall-clock budget
per method (`minutes`; the epochs that fit are computed from a timed calibration of the method's training
step on this machine, so every method gets about the same compute). It is then evaluated on the 10,000
Fashion-MNIST test images with 10, 100 and all labels per class over 3 label draws (linear probe, kNN,
fine-tuning; hyperparameters chosen on a validation split of each budget, `selfsup.evaluate.tuning`), and
transferred to MNIST-5k (linear probe and kNN, 10 and 100 labels per class).

Baselines are computed once per *baseline key*: the encoder's architecture, what the method feeds it
(`encoder_input` on a fixed probe batch: per-image normalisation, the Lab L channel, a downsampled input
all give different keys) and the evaluation settings. The random-init row (linear probe and kNN on the
untrained encoder) is the floor a method must beat to count as having learned; the supervised row trains
the same architecture from random init with the same labels, augmentation, tuning grid and steps.
A baseline is computed before the rows of the method that first needs it, and keeps each finished draw in
`OUT/methods/_baselines_partial/`, so a sitting cut short resumes it from its last draw.

Results are written per method (`OUT/methods/NAME.json`, or `NAME-seedS.json` for other pretraining
seeds) as soon as each is done, so the table can be built over several sittings; finished methods are
skipped unless `force`. The table (`OUT/methods.md`, `OUT/methods.json`) and the label-efficiency plot
(`OUT/label_efficiency.png`) are rebuilt from those files.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from selfsup.api import pretrain
from selfsup.data.sources import load_dataset
from selfsup.data.splits import held_out_test
from selfsup.evaluate.budgets import label_sweep, summarize
from selfsup.evaluate.finetune import finetune_head
from selfsup.evaluate.log import EvaluationLog
from selfsup.evaluate.tuning import GRIDS
from selfsup.methods.base import METHODS, build_method
from selfsup.runs import load_run
from selfsup.utils import atomic_write_text, load_average

EVAL_DATA = "fashion-mnist"
TRANSFER_DATA = "mnist5k"


@dataclass
class BenchConfig:
    """What the table runs. The defaults are the committed table's settings."""

    minutes: float = 10.0  # pretraining wall-clock budget per method on this machine
    budgets: tuple = (10, 100, None)  # labels per class; None = all
    seeds: tuple = (0, 1, 2)  # label draws
    transfer_budgets: tuple = (10, 100)
    finetune_kwargs: dict = field(default_factory=dict)  # overrides of selfsup.evaluate.finetune's defaults
    quick: bool = False  # a smoke run: small pool and data subsets, one epoch


def image_methods() -> list[str]:
    return [n for n in METHODS.names() if METHODS.get(n).modality == "image"]


# --- an equal compute budget per method ---------------------------------------------------------------
def typical_seconds(steps: Sequence[Callable[[], None]], repeats: int = 15, warmup: int = 2) -> list[float]:
    """Seconds per call of each of `steps`, measured so that a shared machine does not skew it.

    The steps run in turn, `repeats` rounds after `warmup` untimed ones, so each sees the same load; every
    call is timed alone and the lower quartile of its times is kept. Other processes only ever add time to
    a call, so the fast calls are the ones that measured the step rather than the machine's load: a mean
    of 5 calls under another job's load varied 1.7x between identical trials (issue 10's tuning log).
    """
    for _ in range(warmup):
        for step in steps:
            step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeats):
        for step, recorded in zip(steps, times):
            start = time.perf_counter()
            step()
            recorded.append(time.perf_counter() - start)
    return [lower_quartile(t) for t in times]


def lower_quartile(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 4]


def calibrate(name: str, pool: Any, batch_size: int, repeats: int = 15, options: dict | None = None) -> dict:
    """Seconds per training step of method `name` (with Config `options`) on a real batch, and of a bare
    step of its encoder (forward, backward, Adam) on the same images as the method feeds them, timed in
    turn by `typical_seconds` so both see the same machine load."""
    from selfsup.train import make_optimizer
    torch.manual_seed(0)
    method = build_method(name, pool.spec, **(options or {})).train()
    batch = pool.batch(torch.arange(batch_size))
    phases = method.phases or (None,)
    optimizers = [make_optimizer(list(method.phase_parameters(p)) if p else method.trainable_parameters(),
                                 method.config) for p in phases]

    def method_step() -> None:
        for phase, opt in zip(phases, optimizers):
            loss, _ = method.phase_loss(batch, phase) if phase else method.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        method.after_step(0.0)

    encoder = copy.deepcopy(method.encoder).train()
    encoder_opt = torch.optim.Adam(encoder.parameters())
    x = method.encoder_input(batch)

    def bare_step() -> None:
        loss = encoder(x).float().square().mean()
        encoder_opt.zero_grad(set_to_none=True)
        loss.backward()
        encoder_opt.step()

    step_s, bare_s = typical_seconds([method_step, bare_step], repeats)
    return {"seconds_per_step": step_s, "bare_seconds_per_step": bare_s, "images_per_s": batch_size / step_s,
            "bare_images_per_s": batch_size / bare_s, "batch_size": batch_size,
            "timing": f"lower quartile of {repeats} timed steps each, in turn"}


def epochs_within(minutes: float, seconds_per_step: float, steps_per_epoch: int, margin: float = 0.9) -> int:
    """Whole epochs that fit in `minutes`, keeping (1 - margin) for the monitor and epoch-end checkpoints."""
    return max(1, math.floor(margin * minutes * 60 / (seconds_per_step * steps_per_epoch)))


# --- resumable benchmark scripts ----------------------------------------------------------------------
def resumable_results(path: Path, cfg: dict, threads: int, fresh: bool) -> dict:
    """A benchmark script's results, resumed from `path` unless `fresh` (finished units under "units" are not
    redone); a file made with another configuration is refused rather than mixed in."""
    results: dict[str, Any] = {}
    if path.is_file() and not fresh:
        results = json.loads(path.read_text())
        if results.get("config") != cfg:
            raise SystemExit(f"{path} was made with another configuration: rerun with --fresh (or another --out)")
    results.setdefault("config", cfg)
    results.setdefault("units", {})
    results.update({"threads": threads, "machine": platform.processor() or platform.machine(),
                    "torch": torch.__version__})
    return results


# Finished draws of a baseline still being computed, one file per key and part (evaluation, transfer).
PARTIAL_BASELINES = "_baselines_partial"


# --- baselines, computed once per key --------------------------------------------------------------------
def baseline_key(method: Any, probe: Any, cfg: BenchConfig) -> str:
    """A fingerprint of everything that changes the random-init and supervised rows: the encoder's
    architecture, what `encoder_input` makes of a fixed probe batch, and the evaluation settings."""
    fed = method.encoder_input(probe)
    digest = hashlib.sha256()
    # MoCo's SplitBatchNorm2d is plain BatchNorm2d outside MoCo's own loss, so downstream it is the same net
    digest.update(repr(method.encoder).replace("SplitBatchNorm2d", "BatchNorm2d").encode())
    digest.update(str((tuple(fed.shape), fed.dtype)).encode())
    digest.update(fed.detach().float().contiguous().numpy().tobytes())
    settings = {"budgets": cfg.budgets, "seeds": cfg.seeds, "transfer": cfg.transfer_budgets, "grids": GRIDS,
                "finetune": cfg.finetune_kwargs, "quick": cfg.quick}
    if finetune_head(method.encoder, cfg.finetune_kwargs) == "batchnorm":  # absent for raw heads, as before
        settings["head"] = "batchnorm"
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def baseline_rows(method: Any, data: dict, cfg: BenchConfig, out: Path) -> tuple[str, dict]:
    """The random-init and supervised rows for this method's baseline key, from the cache or computed."""
    train, test = data["eval"]
    key = baseline_key(method, train.batch(torch.arange(16)), cfg)
    cache = out / "methods" / "_baselines.json"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if key not in known:
        # A ViT's baseline takes about 50 minutes here: each finished draw is kept in a partial log, so a
        # sitting cut short resumes from its last draw rather than from the start.
        partial = {part: EvaluationLog(out / "methods" / PARTIAL_BASELINES / f"{key}-{part}.json", {"key": key})
                   for part in ("eval", "transfer")}
        rows = label_sweep(method, train, test, cfg.budgets, cfg.seeds, ("random_init", "supervised"),
                           finetune_kwargs=cfg.finetune_kwargs, done=partial["eval"].done,
                           on_draw=keep_draw(partial["eval"]))
        transfer_train, transfer_test = data["transfer"]
        transfer = label_sweep(method, transfer_train, transfer_test, cfg.transfer_budgets, cfg.seeds, ("random_init",),
                               done=partial["transfer"].done, on_draw=keep_draw(partial["transfer"]))
        known = json.loads(cache.read_text()) if cache.exists() else {}  # re-read: another sitting may have written
        known[key] = {"encoder": method.config.encoder, "encoder_kwargs": method.config.encoder_kwargs,
                      "fed_as": type(method).encoder_input.__qualname__, "first_method": method.name,
                      "grids": GRIDS, "head": finetune_head(method.encoder, cfg.finetune_kwargs), "rows": rows,
                      "transfer_rows": transfer}
        atomic_write_text(cache, json.dumps(known, indent=2) + "\n")
        for log in partial.values():
            log.path.unlink(missing_ok=True)
    return key, known[key]


def keep_draw(log: EvaluationLog) -> Callable:
    """An `on_draw` for `label_sweep` that adds each finished draw's rows to `log`."""
    def on_draw(budget: int | None, seed: int, rows: list[dict] | None) -> None:
        if rows is not None:
            log.add(rows)
    return on_draw


# --- one method ----------------------------------------------------------------------------------------
def eval_data(cfg: BenchConfig) -> dict:
    """(train, test) of the evaluation data and of the transfer data, as `selfsup.evaluate` splits them."""
    fashion = load_dataset(EVAL_DATA)
    mnist = held_out_test(load_dataset(TRANSFER_DATA))
    parts = {"eval": (fashion.train, fashion.test), "transfer": (mnist.rest, mnist.test)}
    if cfg.quick:
        parts = {k: smoke_subsets(tr, te) for k, (tr, te) in parts.items()}
    return parts


def smoke_subsets(train: Any, test: Any) -> tuple[Any, Any]:
    """For quick smoke runs: about 600 train items (every k-th, so every class stays) and the first 300 test items."""
    every = max(1, len(train) // 600)
    return train.subset(torch.arange(0, len(train), every)), test.subset(torch.arange(min(300, len(test))))


def bench_method(name: str, out: Path, cfg: BenchConfig, data: dict, pretrain_seed: int = 0,
                 reuse_epochs: bool = False) -> dict:
    cls = METHODS.get(name)
    splits = held_out_test(load_dataset(cls.default_data, modality=cls.modality))
    pool = splits.rest if not cfg.quick else splits.rest.subset(torch.arange(min(1024, len(splits.rest))))
    batch_size = min(cls.default_batch_size, len(pool))
    timing = calibrate(name, pool, batch_size)
    steps_per_epoch = len(pool) // batch_size
    epochs = 1 if cfg.quick else epochs_within(cfg.minutes, timing["seconds_per_step"], steps_per_epoch)
    reused = first_seed_epochs(out, name, cfg) if pretrain_seed > 0 or reuse_epochs else None
    if reuse_epochs and reused is None:
        raise ValueError(f"reuse_epochs: {name} has no row at {cfg.minutes:g} minutes in {out / 'methods'} to take "
                         "its epochs from; run it once without reusing epochs")
    epochs = reused or epochs
    load_before = load_average()
    t0 = time.perf_counter()
    # The result JSON is what makes an item done; a run folder without one is an interrupted or forced item,
    # trained again from scratch.
    result = pretrain(name, data=cls.default_data, epochs=epochs, pool_size=len(pool), seed=pretrain_seed,
                      run_dir=run_folder(out, name, pretrain_seed), overwrite=True,
                      train={"progress_bar": False, "knn_every": max(1, epochs // 8)})
    pretrain_s = time.perf_counter() - t0
    pretrained = {"method": name, "pretrain_seed": pretrain_seed, "pretrain_data": cls.default_data, "pool": len(pool),
                  "epochs": epochs, "batch_size": batch_size, "minutes_budget": cfg.minutes,
                  "encoder": result.method.config.encoder, "encoder_kwargs": result.method.config.encoder_kwargs,
                  "calibration": timing, "epochs_from": ("seed 0" if pretrain_seed > 0 else "previous row") if reused
                  else "calibration", "pretrain_seconds": pretrain_s, "images_per_s": result.images_per_s,
                  "load_average_before": load_before, "load_average_after": load_average(),
                  "monitor": monitor_curve(result.run_dir), "pretext": pretext_metrics(result.final)}
    return pretrained | evaluate_pretrained(result.method, out, cfg, data)


def evaluate_pretrained(method: Any, out: Path, cfg: BenchConfig, data: dict) -> dict:
    """The evaluation part of a method's result: its rows, transfer rows and baseline key, with the grids used."""
    t0 = time.perf_counter()
    method = method.eval()
    # The baseline first: it is kept as soon as it is done (a method's rows are kept only with the whole row)
    key, _ = baseline_rows(method, data, cfg, out)
    train, test = data["eval"]
    rows = label_sweep(method, train, test, cfg.budgets, cfg.seeds, ("linear", "knn", "finetune"),
                       finetune_kwargs=cfg.finetune_kwargs)
    transfer_train, transfer_test = data["transfer"]
    transfer = label_sweep(method, transfer_train, transfer_test, cfg.transfer_budgets, cfg.seeds, ("linear", "knn"))
    return {"baseline_key": key, "rows": rows, "transfer_rows": transfer, "grids": GRIDS,
            "eval_seconds": time.perf_counter() - t0, "config": asdict(cfg)}


def reevaluate_method(name: str, out: Path, cfg: BenchConfig, data: dict, pretrain_seed: int = 0) -> dict:
    """A finished row evaluated again from its run folder's pretrained weights, its pretraining kept: for a
    change to evaluation alone (a wider tuning grid), so the row need not pretrain for another 10 minutes."""
    earlier_path, run_dir = result_path(out, name, pretrain_seed), run_folder(out, name, pretrain_seed)
    if not earlier_path.exists() or not (run_dir / "method.safetensors").exists():
        raise SystemExit(f"{name} (seed {pretrain_seed}): re-evaluating needs its result {earlier_path} and its run "
                         f"folder {run_dir}; run it again with --force instead")
    earlier = json.loads(earlier_path.read_text())
    recorded = json.loads((run_dir / "config.json").read_text())
    done = (recorded.get("status"), recorded.get("epochs_done"), recorded["train"].get("seed"))
    if done != ("done", earlier["epochs"], pretrain_seed):
        raise SystemExit(f"{run_dir} is not the finished run behind {earlier_path} (status, epochs, seed: {done}, "
                         f"the row has {earlier['epochs']} epochs): run it again with --force instead")
    # evaluate_pretrained's keys replace the row's evaluation; the rest of its pretraining record is kept, except
    # the curve and final pretext metrics, which are read again from the run folder: they describe the weights
    # evaluated here, which a forced rerun at the same epochs and seed may have replaced since the row was written
    from_run = {"monitor": monitor_curve(run_dir), "pretext": pretext_metrics(recorded.get("final_metrics", {}))}
    return earlier | from_run | evaluate_pretrained(load_run(run_dir), out, cfg, data) | {"reevaluated": True}


def pretext_metrics(final: dict) -> dict:
    """A run's final pretext-task metrics (loss, accuracy, throughput), without per-step duplicates."""
    return {k: v for k, v in final.items() if k.startswith("train/") and "step" not in k}


def monitor_curve(run_dir: Path) -> list[dict]:
    """The online kNN and linear-probe accuracies per monitored epoch, from the run's metrics.csv."""
    import csv
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return []
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("monitor/knn_acc")]
    return [{"epoch": int(r["epoch"]), "knn": float(r["monitor/knn_acc"]),
             "linear": float(r["monitor/linear_acc"]) if r.get("monitor/linear_acc") else None} for r in rows]


# --- the table ---------------------------------------------------------------------------------------------
COLUMNS = [("linear", 10), ("linear", 100), ("linear", "all"), ("knn", 10), ("knn", 100), ("knn", "all"),
           ("finetune", 10), ("finetune", 100), ("finetune", "all")]


def cell(summary: list[dict], protocol: str, budget: Any) -> str:
    for s in summary:
        if s["protocol"] == protocol and s["labels_per_class"] == budget:
            return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"
    return "—"


def mean_of(summary: list[dict], protocol: str, budget: Any) -> float | None:
    return next((s["mean"] for s in summary if s["protocol"] == protocol and s["labels_per_class"] == budget), None)


def load_results(out: Path) -> tuple[list[dict], dict]:
    results = [json.loads(p.read_text()) for p in sorted((out / "methods").glob("*.json")) if p.name[0] != "_"]
    cache = out / "methods" / "_baselines.json"
    return results, (json.loads(cache.read_text()) if cache.exists() else {})


def by_method(results: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Each method's results over its pretraining seeds, per baseline key: seeds evaluated with other settings
    (a re-evaluated seed 0 beside seeds not yet re-evaluated) are never averaged together."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        grouped.setdefault((r["method"], r["baseline_key"]), []).append(r)
    return grouped


def verdict(summary: list[dict], baseline: list[dict]) -> str:
    """Did it learn (linear @100 beats random init by >= 2 points) and does it beat supervised @10 / @100?
    `baseline`: the summary of its baseline key's rows, random-init and supervised together."""
    lin, rnd = mean_of(summary, "linear", 100), mean_of(baseline, "random_init_linear", 100)
    parts = []
    if lin is not None and rnd is not None:
        parts.append(f"{100 * (lin - rnd):+.1f} vs random")
    for budget in (10, 100):
        best = max((m for p in ("linear", "knn", "finetune") if (m := mean_of(summary, p, budget)) is not None), default=None)
        sup = mean_of(baseline, "supervised", budget)
        if best is not None and sup is not None:
            parts.append(f"{100 * (best - sup):+.1f} vs sup @{budget}")
    return "; ".join(parts)


# The fine-tuning grid's lrs before baselines recorded their grids (the key held it all along).
EARLIER_FINETUNE_LRS = (3e-4, 1e-3, 3e-3)


def finetune_lrs(baseline: dict) -> str:
    """The fine-tuning / supervised lrs a baseline group (its rows and its methods' rows) was tuned over, and
    whether their heads saw standardised features (groups measured before `head_norm` had raw ones)."""
    lrs = sorted({p["lr"] for p in baseline["grids"]["finetune"]}) if "grids" in baseline else EARLIER_FINETUNE_LRS
    head = "; head on BatchNorm'd features" if baseline.get("head") == "batchnorm" else ""
    return f"fine-tune lr {lrs[0]:g}–{lrs[-1]:g}{head}"


def used_baselines(results: list[dict], baselines: dict) -> dict:
    """The baseline groups some result is compared with: a group whose methods were all evaluated again under
    other settings stays in the cache (`_baselines.json`) but leaves the table."""
    used = {r["baseline_key"] for r in results}
    return {key: base for key, base in baselines.items() if key in used}


def markdown_tables(results: list[dict], baselines: dict) -> str:
    head = "| " + " | ".join(f"{p} @{b}" for p, b in COLUMNS) + " |"
    lines = ["| row | encoder key " + head + " best − random (linear @100); best − supervised |",
             "|---|---" + "|---" * len(COLUMNS) + "|---|"]
    grouped = by_method(results)
    for key, base in used_baselines(results, baselines).items():
        baseline = summarize(base["rows"])  # the random-init and the supervised protocols' rows together
        rnd = {("linear", b): cell(baseline, "random_init_linear", b) for b in (10, 100, "all")}
        rnd |= {("knn", b): cell(baseline, "random_init_knn", b) for b in (10, 100, "all")}
        sup = {("finetune", b): cell(baseline, "supervised", b) for b in (10, 100, "all")}
        enc = base["encoder"] + (f" {base['encoder_kwargs']}" if base["encoder_kwargs"] else "")
        lines.append(f"| **random init** | {key[:6]} ({enc}, fed as {base['fed_as']}; {finetune_lrs(base)}) | "
                     + " | ".join(rnd.get(c, "") for c in COLUMNS) + " | |")
        lines.append(f"| **supervised** (fine-tune columns) | {key[:6]} | "
                     + " | ".join(sup.get(c, "") for c in COLUMNS) + " | |")
        for (name, run_key), runs in grouped.items():
            if run_key != key:
                continue
            summary = summarize([r for run in runs for r in run["rows"]])
            seeds = f" ({len(runs)} seeds)" if len(runs) > 1 else ""
            lines.append(f"| {name}{seeds} | {key[:6]} | " + " | ".join(cell(summary, p, b) for p, b in COLUMNS)
                         + f" | {verdict(summary, baseline)} |")
    return "\n".join(lines)


def pretraining_table(results: list[dict]) -> str:
    lines = ["Images/s count pool images per second of a training step (a method may feed its encoder several "
             "views or rotations of each); the bare step is forward + backward + Adam of the encoder alone on "
             "the same pool images, timed in the same calibration run.\n",
             "| method | data, pool | epochs (budget) | wall | images/s | bare encoder step, images/s | share of bare "
             "| load avg before → after | pretext | online kNN / linear (first → last) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        cal = r["calibration"]
        pretext = ", ".join(f"{k.removeprefix('train/')} {v:.3f}" for k, v in r["pretext"].items()
                            if "acc" in k) or "—"
        curve = r["monitor"]
        online = (f"{100 * curve[0]['knn']:.1f} → {100 * curve[-1]['knn']:.1f} / "
                  f"{100 * (curve[0]['linear'] or 0):.1f} → {100 * (curve[-1]['linear'] or 0):.1f}") if curve else "—"
        lines.append(f"| {r['method']} (seed {r['pretrain_seed']}) | {r['pretrain_data']}, {r['pool']} | {r['epochs']} "
                     f"({r['minutes_budget']:g} min) | {r['pretrain_seconds']:.0f} s | {cal['images_per_s']:.0f} "
                     f"| {cal['bare_images_per_s']:.0f} | {cal['bare_seconds_per_step'] / cal['seconds_per_step']:.2f} "
                     f"| {r['load_average_before'][0]} → {r['load_average_after'][0]} | {pretext} | {online} |")
    return "\n".join(lines)


def transfer_table(results: list[dict], baselines: dict) -> str:
    cols = [(p, b) for p in ("linear", "knn") for b in (10, 100)]
    lines = ["| row | " + " | ".join(f"{p} @{b}" for p, b in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for key, base in used_baselines(results, baselines).items():
        s = summarize(base.get("transfer_rows", []))
        lines.append(f"| random init ({key[:6]}) | " + " | ".join(cell(s, f"random_init_{p}", b) for p, b in cols) + " |")
    for (name, key), runs in by_method(results).items():
        s = summarize([r for run in runs for r in run["transfer_rows"]])
        lines.append(f"| {name} ({key[:6]}) | " + " | ".join(cell(s, p, b) for p, b in cols) + " |")
    return "\n".join(lines)


def build_table(out: Path) -> dict:
    results, baselines = load_results(out)
    meta = {"machine": platform.platform(), "processor": platform.processor(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "eval_data": EVAL_DATA, "transfer_data": TRANSFER_DATA}
    text = ("Fashion-MNIST test accuracy (%) on its 10,000 test images, mean ± std over 3 label draws (and over "
            "pretraining seeds where stated), at 10, 100 and all labels per class. Every method pretrained for the "
            "same wall-clock budget on this machine; hyperparameters of every protocol chosen on a validation split "
            "of the labeled budget. Rows are grouped by baseline key: a method is compared with the random-init and "
            f"supervised rows of its own encoder, fed as it feeds it. Made by `python benchmarks/methods.py` "
            f"({meta['threads']} threads, torch {meta['torch']}).\n\n" + markdown_tables(results, baselines)
            + "\n\n## Pretraining\n\n" + pretraining_table(results)
            + f"\n\n## Transfer to {TRANSFER_DATA} (frozen features)\n\n" + transfer_table(results, baselines) + "\n")
    atomic_write_text(out / "methods.md", text)
    atomic_write_text(out / "methods.json", json.dumps({"meta": meta, "results": results, "baselines": baselines},
                                                        indent=2) + "\n")
    if results:
        plot_label_efficiency(results, baselines, out / "label_efficiency.png")
    return {"results": results, "table": text}


def plot_label_efficiency(results: list[dict], baselines: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    budgets = [10, 100, "all"]
    fig, ax = plt.subplots(figsize=(8, 5))

    def curve(summary: list[dict], protocol: str, **style: Any) -> None:
        points = [(i, s) for i, b in enumerate(budgets) for s in summary if s["protocol"] == protocol and s["labels_per_class"] == b]
        if points:
            ax.errorbar([i for i, _ in points], [100 * s["mean"] for _, s in points], [100 * s["std"] for _, s in points],
                        capsize=2, **style)

    for (name, key), runs in by_method(results).items():
        summary = summarize([r for run in runs for r in run["rows"]])
        best = max(("linear", "knn", "finetune"), key=lambda p: mean_of(summary, p, 100) or 0)
        curve(summary, best, marker="o", ms=3, label=f"{name} ({best}, {key[:6]})")
    for key, base in used_baselines(results, baselines).items():
        s = summarize(base["rows"])
        curve(s, "supervised", marker="*", ms=8, ls="--", color="k", label=f"supervised ({key[:6]})")
        curve(s, "random_init_linear", marker="x", ls=":", color="gray", label=f"random init linear ({key[:6]})")
    ax.set_xticks(range(len(budgets)), [str(b) for b in budgets])
    ax.set_xlabel("labels per class")
    ax.set_ylabel("Fashion-MNIST test accuracy (%)")
    ax.set_title("Label efficiency: best protocol per method against its baselines")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def first_seed_epochs(out: Path, name: str, cfg: BenchConfig) -> int | None:
    """The epochs that pretraining seed 0 of `name` ran under the same budget, if it has run: later seeds
    reuse them, so the spread over seeds holds no calibration noise (it varied 1.7x under load)."""
    first = result_path(out, name, 0)
    if cfg.quick or not first.exists():
        return None
    earlier = json.loads(first.read_text())
    return earlier["epochs"] if earlier.get("minutes_budget") == cfg.minutes else None


def result_path(out: Path, name: str, pretrain_seed: int) -> Path:
    return out / "methods" / (f"{name}.json" if pretrain_seed == 0 else f"{name}-seed{pretrain_seed}.json")


def run_folder(out: Path, name: str, pretrain_seed: int) -> Path:
    """Where a row's pretraining run lives: its weights are what `--reevaluate` evaluates again."""
    return out / "runs" / f"{name}-seed{pretrain_seed}"


def run_bench(methods: list[str] | None = None, out: str | Path = "benchmarks/results", quick: bool = False,
              force: bool = False, minutes: float = 10.0, pretrain_seeds: Iterable[int] = (0,),
              reuse_epochs: bool = False, reevaluate: bool = False, **overrides: Any) -> dict:
    """Bench each method (default: every image method) under `minutes` of pretraining, once per pretraining
    seed, skipping those already done (unless `force`), then rebuild the table from every result on disk.
    `reuse_epochs`: rerun with the epochs of the method's existing row instead of a new calibration, for a
    change that leaves the step's cost alone (a tuned temperature or lr): calibrations on different machines
    or days gave the same step 28 and 39 epochs of 10 minutes, which would swamp the change being measured.
    `reevaluate`: evaluate finished rows again from their run folders' weights, without pretraining (for a change
    to evaluation alone); rows whose run folder is gone are refused."""
    out = Path(out)
    (out / "methods").mkdir(parents=True, exist_ok=True)
    if quick:  # budgets that fit the quick subsets, and a handful of fine-tuning steps
        overrides = {"budgets": (5, 20, None), "transfer_budgets": (5,), "seeds": (0, 1),
                     "finetune_kwargs": {"min_steps": 10, "max_steps": 10}} | overrides
    cfg = BenchConfig(minutes=minutes, quick=quick, **overrides)
    data = None
    for name in methods or image_methods():
        for seed in pretrain_seeds:
            target = result_path(out, name, seed)
            if target.exists() and not (force or reevaluate):
                print(f"{name} (seed {seed}): done already ({target})")
                continue
            print(f"{name} (seed {seed}): " + ("evaluating again ..." if reevaluate else
                                               f"pretraining for {minutes:g} min and evaluating ..."), flush=True)
            data = data or eval_data(cfg)
            result = (reevaluate_method(name, out, cfg, data, seed) if reevaluate
                      else bench_method(name, out, cfg, data, seed, reuse_epochs))
            atomic_write_text(target, json.dumps(result, indent=2) + "\n")
            print(f"{name}: {result['epochs']} epochs, {result['pretrain_seconds']:.0f} s pretraining, "
                  f"{result['eval_seconds']:.0f} s evaluation", flush=True)
    table = build_table(out)
    print(table["table"])
    return table
