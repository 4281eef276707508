"""`selfsup advise`: which self-supervised method helps on *your* data, by how much, at how many labels.

    selfsup advise --data photos/ --labels labeled/ --budget 30m

1. **Candidates.** A small set of methods suited to the data's modality and size (`candidates`): one of each
   family that did well in this project's own table (benchmarks/results/methods.md) — a contrastive method
   (MoCo v2; SimCLR on small pools, where a queue of past batches would hold mostly the same images), a pretext
   task (rotation) and, from `LARGE_POOL` images on, a generative one (super-resolution). `methods=` overrides.
2. **Budget.** `PRETRAIN_SHARE` of the wall-clock budget is split equally among the methods; each method's
   epochs are what fits in its share after a timed calibration of its training step (`bench.calibrate`). The
   rest is left for evaluation (not enforced: the report gives the time really spent).
3. **Pretraining** through `selfsup.api.pretrain` (held-out test set recorded, as every run).
4. **Evaluation** through `selfsup.api.evaluate`: the linear probe and kNN at several label budgets (labels
   per class, `label_budgets`), each over `draws` seeded label draws, against the random-init floor and the
   supervised baseline of each distinct encoder (computed once per encoder and input, shared by the methods
   that use it). Labels come from `--data`'s class folders (its held-out test set scores), or from `labels`,
   a separate labeled folder or .npz (transfer: its own held-out test set scores).
5. **Report** (`OUT/advice.md`, `OUT/advice.json`): methods ranked by the linear probe's accuracy averaged over
   the label budgets, with kNN, random init and supervised beside them, and a recommendation that says how sure
   it is. Label draws are the same for every method (same seeds), so the first and second are compared on paired
   differences: a gap is "within noise" when it is less than twice its standard error, which combines the spread
   over the draws with the binomial sampling error of the test set (every draw is scored on the same test set).
   It does not cover pretraining seeds (one pretraining run per method within a budget).
"""
from __future__ import annotations

import json
import math
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from selfsup import api
from selfsup.bench import calibrate, epochs_within
from selfsup.data.sources import load_dataset
from selfsup.data.splits import held_out_test
from selfsup.errors import SelfSupError
from selfsup.methods.base import METHODS, build_method
from selfsup.utils import atomic_write_text, load_average

PRETRAIN_SHARE = 0.5  # of the budget for pretraining; the rest for evaluation (not enforced)
SMALL_POOL = 2_000  # below: SimCLR rather than MoCo v2
LARGE_POOL = 10_000  # from here: add a generative method
WHY = {
    "mocov2": "contrastive (MoCo v2): the best linear probe at 10 labels/class in this project's Fashion-MNIST table",
    "simclr": "contrastive (SimCLR): in-batch negatives, no queue of past batches to go stale on a small pool",
    "rotation": "pretext task (RotNet): cheap per step, strong at 100 labels/class in this project's table",
    "super-resolution": "generative (super-resolution): learns from pixels, no augmentation assumptions",
}
PROBE_BUDGETS = (10, 100)


def parse_budget(text: str | float | int) -> float:
    """Seconds in a budget written `30m`, `1h`, `90s`, `1h30m` or a plain number of minutes."""
    if isinstance(text, (int, float)):
        seconds = 60.0 * text
    else:
        s = str(text).strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", s):
            seconds = 60.0 * float(s)
        else:
            parts = re.findall(r"(\d+(?:\.\d+)?)\s*(h|m|min|s|sec)", s)
            if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", s):
                raise SelfSupError(f"cannot read the budget {text!r}: write it like 30m, 1h, 90s or 1h30m")
            unit = {"h": 3600, "m": 60, "min": 60, "s": 1, "sec": 1}
            seconds = sum(float(n) * unit[u] for n, u in parts)
    if not seconds > 0:
        raise SelfSupError(f"the budget must be positive, got {text!r}")
    return seconds


def candidates(modality: str, pool_size: int) -> list[str]:
    """The methods tried on data of `modality` with `pool_size` pretraining items (see the module docstring)."""
    if modality != "image":
        raise SelfSupError(f"advise chooses among image methods so far; this data is {modality}. Compare text "
                           f"methods with `selfsup pretrain` and `selfsup evaluate`")
    chosen = ["simclr" if pool_size < SMALL_POOL else "mocov2", "rotation"]
    return chosen + (["super-resolution"] if pool_size >= LARGE_POOL else [])


def label_budgets(labels: torch.Tensor, wanted: tuple[int, ...] = PROBE_BUDGETS) -> list[int]:
    """The labels-per-class budgets that fit: each at most half the smallest class (the rest stays unlabeled and
    a validation split is carved from the budget); at least one budget, of half the smallest class."""
    smallest = int(torch.bincount(labels).min())
    if smallest < 4:
        raise SelfSupError(f"the smallest class has {smallest} labeled examples outside the test set; advise needs "
                           f"at least 4 per class to draw label budgets")
    fits = [b for b in wanted if b <= smallest // 2]
    return fits or [smallest // 2]


def encoder_key(method) -> str:
    """What makes two methods' random-init and supervised rows the same: the encoder, its options, and what
    the method feeds it."""
    cfg = method.config
    return json.dumps([cfg.encoder, cfg.encoder_kwargs, type(method).encoder_input.__qualname__], sort_keys=True,
                      default=str)


@dataclass
class Plan:
    methods: list[str]
    seconds_per_method: float
    epochs: dict[str, int] = field(default_factory=dict)
    batch_size: dict[str, int] = field(default_factory=dict)
    calibration: dict[str, dict] = field(default_factory=dict)


def plan(methods: list[str], pool, budget_s: float, options: dict[str, dict]) -> Plan:
    """Split the pretraining share of the budget equally, and compute each method's epochs from a timed step."""
    share = PRETRAIN_SHARE * budget_s / len(methods)
    p = Plan(methods, share)
    for name in methods:
        cls = METHODS.get(name)
        batch = min(cls.default_batch_size, max(8, len(pool) // 4))
        torch.manual_seed(0)
        timing = calibrate_with(name, pool, batch, options.get(name, {}))
        steps = len(pool) // batch
        p.batch_size[name], p.calibration[name] = batch, timing
        p.epochs[name] = epochs_within(share / 60, timing["seconds_per_step"], steps)
    return p


def calibrate_with(name: str, pool, batch: int, options: dict) -> dict:
    """`bench.calibrate` for the method as it will be trained (its options given here)."""
    if not options:
        return calibrate(name, pool, batch, repeats=3)
    from selfsup.train import make_optimizer
    method = build_method(name, pool.spec, **options).train()
    x = pool.batch(torch.arange(batch))
    phases = method.phases or (None,)
    opts = [make_optimizer(list(method.phase_parameters(ph)) if ph else method.trainable_parameters(), method.config)
            for ph in phases]
    start, steps = None, 3
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()
        for ph, opt in zip(phases, opts):
            loss, _ = method.phase_loss(x, ph) if ph else method.loss(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    step_s = (time.perf_counter() - start) / steps
    return {"seconds_per_step": step_s, "images_per_s": batch / step_s, "batch_size": batch}


def paired_gap(a: list[dict], b: list[dict], protocol: str, budget: int, test_size: int = 0) -> dict:
    """Mean of (a - b) over the label draws both have, for `protocol` at `budget`, and its standard error.

    The error combines the spread over draws (the draws are paired: same seeds, same labels) with the
    sampling error of a test set of `test_size` items (binomial, for each side; 0: left out), which the
    draws cannot show: every draw is scored on the same test set.
    """
    acc = {r["seed"]: r["acc"] for r in a if r["protocol"] == protocol and r["labels_per_class"] == budget}
    other = {r["seed"]: r["acc"] for r in b if r["protocol"] == protocol and r["labels_per_class"] == budget}
    seeds = [s for s in sorted(acc) if s in other]
    diffs = [acc[s] - other[s] for s in seeds]
    n = len(diffs)
    if n == 0:
        return {"mean": float("nan"), "se": float("nan"), "n": 0, "within_noise": True}
    mean = sum(diffs) / n
    draws_var = sum((d - mean) ** 2 for d in diffs) / (n - 1) / n if n > 1 else float("nan")
    test_var = 0.0
    if test_size:
        pa, pb = sum(acc[s] for s in seeds) / n, sum(other[s] for s in seeds) / n
        test_var = (pa * (1 - pa) + pb * (1 - pb)) / test_size
    se = math.sqrt(draws_var + test_var)
    return {"mean": mean, "se": se, "n": n, "within_noise": not (n > 1 and abs(mean) >= 2 * se)}


def mean_acc(summary: list[dict], protocol: str, budget: int) -> tuple[float, float, int] | None:
    for r in summary:
        if r["protocol"] == protocol and r["labels_per_class"] == budget:
            return r["mean"], r["std"], r["n"]
    return None


def advise(data: str, labels: str | None = None, budget: str | float = "30m", out: str | Path = "advice",
           methods: list[str] | None = None, draws: int = 3, options: dict[str, dict] | None = None,
           budgets: tuple[int, ...] = PROBE_BUDGETS, seed: int = 0, finetune_kwargs: dict | None = None,
           runs_dir: str | Path | None = None, progress: Callable[[str], None] | None = None,
           overwrite: bool = False) -> dict:
    """Pretrain a few suitable methods on `data` within `budget`, evaluate them with labels, and write a ranked
    report with a recommendation to `out` (advice.md, advice.json). Returns the report's content.

    `labels`: a labeled folder (class subfolders) or .npz to evaluate with, when `data` has no labels or they
    should not be used. `methods` replaces the candidates; `options` maps a method to its options (as
    `pretrain`'s); `draws` label draws per budget; `budgets` the wanted labels per class; `finetune_kwargs`
    change the supervised baseline's training (`evaluate.finetune.finetune`'s options, e.g. fewer steps).
    The methods' run folders go to `runs_dir` (default OUT/runs): `selfsup export` and `embed` take them.
    An `out` that holds an earlier report is refused before anything is trained, unless `overwrite`.
    """
    say = progress or (lambda line: None)
    started = time.perf_counter()
    load_start = load_average()
    budget_s = parse_budget(budget)
    if draws < 1:
        raise SelfSupError(f"draws must be at least 1, got {draws}")
    out = Path(out)
    options = options or {}
    splits = load_dataset(data)
    pool = held_out_test(splits).rest
    labeled = pool if labels is None else held_out_test(load_dataset(labels)).rest
    if labeled.labels is None or len(torch.unique(labeled.labels)) < 2:
        where = f"{labels}" if labels else f"{data}"
        raise SelfSupError(f"{where} has no labels of two classes or more: advise evaluates with labels. Give "
                           f"--labels DIR_OR_NPZ (a folder of class folders, or an .npz with images and labels), "
                           f"or class subfolders in --data")
    methods = list(methods) if methods else candidates(pool.spec.modality, len(pool))
    for name in methods:
        METHODS.get(name)  # an unknown name fails here, before anything is trained
    per_class = label_budgets(labeled.labels, tuple(budgets))
    seeds = list(range(draws))
    clear_earlier_report(out, overwrite)  # after every check of the input: a rejected call deletes nothing
    say(f"{len(pool)} images to pretrain on; trying {', '.join(methods)}; labels per class {per_class}, "
        f"{draws} draw(s) each")
    p = plan(methods, pool, budget_s, options)
    results, baselines, keys = {}, {}, {}
    for name in methods:
        say(f"{name}: {p.epochs[name]} epoch(s) in about {p.seconds_per_method:.0f} s")
        t0 = time.perf_counter()
        run = api.pretrain(name, data=data, epochs=p.epochs[name], batch_size=p.batch_size[name], seed=seed,
                           run_dir=Path(runs_dir or out / "runs") / name, options=options.get(name), monitor=False, overwrite=True,
                           train={"progress_bar": False, "knn_every": 0}, stream=False)
        pretrain_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ev = api.evaluate(run.run_dir, data=labels, protocols=["linear", "knn"], labels_per_class=per_class,
                          seeds=seeds, out=out / "evaluations" / f"{name}.json")
        key = keys.setdefault(encoder_key(run.method), f"encoder{len(keys) + 1}")
        if key not in baselines:
            say(f"{name}: random-init and supervised rows of its encoder ({key})")
            base = api.evaluate(run.run_dir, data=labels, protocols=["random_init", "supervised"],
                                labels_per_class=per_class, seeds=seeds, finetune_kwargs=finetune_kwargs,
                                out=out / "evaluations" / f"{key}-baselines.json")
            baselines[key] = {"rows": base["rows"], "summary": base["summary"], "first_method": name,
                              "encoder": json.loads(next(k for k, v in keys.items() if v == key))}
        results[name] = {"epochs": p.epochs[name], "batch_size": p.batch_size[name], "pretrain_seconds": pretrain_s,
                         "eval_seconds": time.perf_counter() - t0, "calibration": p.calibration[name],
                         "why": WHY.get(name, "chosen by the user"), "baseline": key, "rows": ev["rows"],
                         "summary": ev["summary"], "test_size": ev["test_size"], "test_rule": ev["test_rule"],
                         "run_dir": str(run.run_dir)}
    report = {"data": data, "labels": labels, "budget_seconds": budget_s, "pool_size": len(pool),
              "labels_per_class": per_class, "draws": draws, "methods": methods, "results": results,
              "baselines": baselines, "ranking": rank(results, per_class),
              "seconds": time.perf_counter() - started, "load_average": {"start": load_start, "end": load_average()},
              "settings": {"pretrain_share": PRETRAIN_SHARE, "seconds_per_method": p.seconds_per_method, "seed": seed}}
    report["recommendation"] = recommend(report)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "advice.json", json.dumps(report, indent=2, default=str) + "\n")
    atomic_write_text(out / "advice.md", markdown(report))
    say(f"report: {out / 'advice.md'}")
    return report


def clear_earlier_report(out: Path, overwrite: bool) -> None:
    """Refuse an `out` that holds an earlier report (or, with `overwrite`, delete it), before any pretraining:
    its evaluation logs belong to the earlier runs, so they must neither be resumed nor found mid-way."""
    earlier = [p for p in (out / "advice.json", out / "advice.md", out / "evaluations") if p.exists()]
    if not earlier:
        return
    if not overwrite:
        raise SelfSupError(f"{out} holds an earlier report ({', '.join(p.name for p in earlier)}): pick another "
                           f"--out, or pass --overwrite to replace it")
    for path in earlier:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def rank(results: dict, per_class: list[int]) -> list[str]:
    """Methods by the linear probe's mean accuracy, averaged over the label budgets, best first."""
    def score(name: str) -> float:
        means = [m[0] for b in per_class if (m := mean_acc(results[name]["summary"], "linear", b))]
        return sum(means) / len(means) if means else float("-inf")
    return sorted(results, key=score, reverse=True)


def recommend(report: dict) -> dict:
    """The first method; at each label budget whether it leads the second, beats random init, and how it
    stands against supervised training; how sure that makes it, in words."""
    results, ranking, per_class = report["results"], report["ranking"], report["labels_per_class"]
    best = ranking[0]
    n_test = results[best]["test_size"]
    base = report["baselines"][results[best]["baseline"]]
    floor = [dict(r, protocol="linear") for r in base["rows"] if r["protocol"] == "random_init_linear"]
    lines, verdicts, learned = [], [], []
    for b in per_class:
        parts = []
        if len(ranking) > 1:
            gap = paired_gap(results[best]["rows"], results[ranking[1]]["rows"], "linear", b, n_test)
            verdicts.append("tie" if gap["within_noise"] else "leads" if gap["mean"] > 0 else "trails")
            parts.append(f"{100 * gap['mean']:+.1f} ± {100 * gap['se']:.1f} points against {ranking[1]}"
                         + (" (within noise)" if gap["within_noise"] else ""))
        rnd = paired_gap(results[best]["rows"], floor, "linear", b, n_test)
        learned.append(rnd["mean"] > 0 and not rnd["within_noise"])
        parts.append(f"{100 * rnd['mean']:+.1f} ± {100 * rnd['se']:.1f} against random init"
                     + (" (within noise)" if rnd["within_noise"] else ""))
        mine, sup = mean_acc(results[best]["summary"], "linear", b), mean_acc(base["summary"], "supervised", b)
        if mine and sup:
            parts.append(f"{100 * (mine[0] - sup[0]):+.1f} against supervised training of the same encoder")
        lines.append(f"at {b} labels/class: " + "; ".join(parts))
    if len(ranking) == 1:
        confidence = "one method tried, so there is no ranking to be sure of"
    elif all(v == "leads" for v in verdicts):
        confidence = f"sure: it leads {ranking[1]} beyond noise at every label budget"
    elif "trails" in verdicts:
        where = ", ".join(f"{v} at {b}" for v, b in zip(verdicts, per_class))
        confidence = (f"mixed: against {ranking[1]} it {where} labels/class (ranked by the mean over budgets); "
                      f"pick by the budget you will have")
    elif "leads" in verdicts:
        confidence = f"fairly sure: it leads {ranking[1]} beyond noise at some label budgets and ties at the others"
    else:
        confidence = (f"not sure: {best} and {ranking[1]} are within noise of each other at every label budget; "
                      f"either will do (a larger budget or more draws would tell them apart)")
    helps = all(learned)
    text = (f"Use **{best}** ({results[best]['why']}). Confidence: {confidence}. "
            + ("It beats the random-init floor beyond noise at every label budget. " if helps else
               "It does not beat the random-init floor beyond noise at every label budget: pretraining may not be "
               "worth it on this data within this budget. ")
            + " ".join(f"{line[0].upper()}{line[1:]}." for line in lines)
            + f" (± is one standard error: label draws and the {n_test}-item test set.)")
    return {"method": best, "confidence": confidence, "verdicts": dict(zip(map(str, per_class), verdicts)),
            "beats_random_init": helps, "text": text, "details": lines}


def markdown(r: dict) -> str:
    per_class = r["labels_per_class"]
    head = ["rank", "method", "epochs", "pretrain s"] + [f"{p} @{b}" for b in per_class for p in ("linear", "knn")]
    lines = [f"# Which self-supervised method for {r['data']}?", "",
             r["recommendation"]["text"], "",
             f"Pool: {r['pool_size']:,} images to pretrain on; labels from {r['labels'] or r['data']} "
             f"(test set: {next(iter(r['results'].values()))['test_size']} items, "
             f"{next(iter(r['results'].values()))['test_rule']}). Budget {r['budget_seconds'] / 60:g} min "
             f"({100 * r['settings']['pretrain_share']:.0f}% for pretraining: about "
             f"{r['settings']['seconds_per_method']:.0f} s per method); {r['seconds'] / 60:.1f} min spent. "
             f"Accuracy in %, mean ± std over {r['draws']} label draw(s) (the same draws for every row); one "
             f"pretraining run per method, so pretraining-seed variance is not in the spread. Load average "
             f"{r['load_average']['start']} at the start, {r['load_average']['end']} at the end.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(summary, protocol, b):
        m = mean_acc(summary, protocol, b)
        return "" if m is None else f"{100 * m[0]:.1f} ± {100 * m[1]:.1f}"

    for i, name in enumerate(r["ranking"], 1):
        res = r["results"][name]
        lines.append("| " + " | ".join([str(i), name, str(res["epochs"]), f"{res['pretrain_seconds']:.0f}"]
                                       + [cell(res["summary"], p, b) for b in per_class for p in ("linear", "knn")]) + " |")
    for key, base in r["baselines"].items():
        users = ", ".join(n for n in r["ranking"] if r["results"][n]["baseline"] == key)
        lines.append("| | random init (" + users + ") | | | " + " | ".join(
            cell(base["summary"], f"random_init_{p}", b) for b in per_class for p in ("linear", "knn")) + " |")
        lines.append("| | supervised (" + users + ") | | | " + " | ".join(
            f"{cell(base['summary'], 'supervised', b)} | " for b in per_class) + " |")
    lines += ["", "Supervised: the same encoder trained from random init on the same labels (fine-tuning grid; "
              "shown in the linear columns). Why these methods:"]
    lines += [f"- {n}: {r['results'][n]['why']}" for n in r["ranking"]]
    return "\n".join(lines) + "\n"
