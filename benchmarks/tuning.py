"""Recipe tuning log of the image methods (see `selfsup.recipes`): a few candidate settings per method,
each pretrained for the same wall-clock budget and scored on a validation split of Fashion-MNIST's train
part (never its test set). Resumable per trial.

Usage: python benchmarks/tuning.py [--methods simclr mocov2] [--minutes 3] [--quick]
Results: benchmarks/results/tuning.{md,json}, benchmarks/results/tuning/METHOD/TRIAL.json.
"""
import argparse

from selfsup.recipes import GRID, run_tuning

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--methods", nargs="+", choices=sorted(GRID))
    p.add_argument("--minutes", type=float, default=3.0, help="pretraining wall-clock budget per trial")
    p.add_argument("--quick", action="store_true", help="smoke run: small pool, one epoch, two trials per method")
    p.add_argument("--force", action="store_true", help="rerun trials that already have results")
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args()
    print(run_tuning(a.methods, a.out, a.minutes, a.quick, a.force)["table"])
