"""How long `selfsup evaluate` spends on frozen features, before and after this change, on one small run.

Before (the start commit's path): the label sweep extracted the features of the whole label pool and the
test set, for the trained and the untrained (random-init) encoder, on every call. After: only the items some
draw labels are extracted, and every extracted set is kept in RUN/features/ (`evaluate.features.FeatureCache`),
so a second evaluation of the same run (other settings, a resumed one, the report) reads them from disk.
All three use the same probes and draws: the accuracies must agree, and the script checks they do.

The protocols timed are the feature protocols (linear probe, kNN, and both on the random-init encoder);
fine-tuning and the supervised baseline train the encoder per draw and gain nothing from a feature cache.

Usage: python benchmarks/evaluate_speed.py [--data fashion-mnist] [--budgets 10] [--seeds 0 1]
Results: benchmarks/results/evaluate_speed.{json,md}, with the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

import selfsup.api as api
from selfsup.evaluate.budgets import draw_budget, evaluate_protocols, random_init_features
from selfsup.evaluate.features import extract_features
from selfsup.runs import load_run
from selfsup.utils import atomic_write_text

PROTOCOLS = ["linear", "knn", "random_init"]


def before(run: Path, budgets: list[int], seeds: list[int]) -> tuple[float, dict]:
    """The start commit's sweep: features of the whole pool and test set, both encoders, then every draw."""
    method = load_run(run)
    record = json.loads((run / "config.json").read_text())["data"]
    data = record.get("source", record["name"])
    splits = api.run_data(data, run, method.modality, method.spec)
    held = api.evaluation_split(splits, data, api.RunFolder(run))
    train, test = held.rest, held.test
    start = time.perf_counter()
    features = {"method": (extract_features(method, train), extract_features(method, test)),
                "random_init": random_init_features(method, train, test)}
    accs = {}
    for budget in budgets:
        chosen = None
        for seed in seeds:
            index = draw_budget(train.labels, budget, seed)
            drawn = {name: (x[index], xt) for name, (x, xt) in features.items()}
            result, choices = evaluate_protocols(method, train.subset(index), test, PROTOCOLS, seed=seed,
                                                 features=drawn, fixed=chosen)
            chosen = chosen or {name: c["params"] for name, c in choices.items()}
            accs |= {f"{name} {budget}/{seed}": acc for name, acc in result.items()}
    return time.perf_counter() - start, {"pool": len(train), "test": len(test), "accs": accs}


def after(run: Path, budgets: list[int], seeds: list[int], out: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    result = api.evaluate(run, protocols=PROTOCOLS, labels_per_class=budgets, seeds=seeds, out=out)
    seconds = time.perf_counter() - start
    accs = {f"{r['protocol']} {r['labels_per_class']}/{r['seed']}": r["acc"] for r in result["rows"]}
    return seconds, {"accs": accs, "feature_cache": result["feature_cache"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--pool-size", type=int, default=1000, help="pretraining pool (the run is 1 epoch)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        api.pretrain("rotation", args.data, epochs=1, pool_size=args.pool_size, run_dir=run,
                     train={"knn_every": 0, "progress_bar": False})
        t_before, b = before(run, args.budgets, args.seeds)
        t_cold, cold = after(run, args.budgets, args.seeds, Path(tmp) / "cold.json")
        t_warm, warm = after(run, args.budgets, args.seeds, Path(tmp) / "warm.json")  # same run: features on disk
    assert b["accs"] == cold["accs"] == warm["accs"], "the three paths disagree on an accuracy"
    report = {"data": args.data, "pool": b["pool"], "test": b["test"], "budgets": args.budgets, "seeds": args.seeds,
              "protocols": PROTOCOLS, "seconds": {"before": t_before, "after_cold": t_cold, "after_warm": t_warm},
              "feature_cache": {"cold": cold["feature_cache"], "warm": warm["feature_cache"]},
              "same_accuracies": True, "load_average": {"before": load_before, "after": os.getloadavg()},
              "machine": platform.platform(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = Path(args.out)
    atomic_write_text(out / "evaluate_speed.json", json.dumps(report, indent=2) + "\n")
    s = report["seconds"]
    lines = [f"Evaluation of a 1-epoch rotation run on {args.data}: protocols {', '.join(PROTOCOLS)}, "
             f"{args.budgets} labels per class x seeds {args.seeds}; label pool {b['pool']} items, test set "
             f"{b['test']}. Load average before {load_before[0]:.1f} and after {os.getloadavg()[0]:.1f} on "
             f"{torch.get_num_threads()} threads: other work shared the machine, so read the ratios, not the "
             "seconds. The three paths gave the same accuracies. Made by `python benchmarks/evaluate_speed.py`.",
             "", "| path | seconds | features extracted / read from RUN/features |", "|---|---|---|",
             f"| before: whole pool and test set, both encoders, every call | {s['before']:.1f} | 4 sets "
             f"({2 * (b['pool'] + b['test'])} items) / 0 |",
             f"| after, first evaluation: only drawn items, kept on disk | {s['after_cold']:.1f} | "
             f"{cold['feature_cache']['misses']} / {cold['feature_cache']['hits']} |",
             f"| after, a second evaluation of the run | {s['after_warm']:.1f} | "
             f"{warm['feature_cache']['misses']} / {warm['feature_cache']['hits']} |"]
    atomic_write_text(out / "evaluate_speed.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
