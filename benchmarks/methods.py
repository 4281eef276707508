"""The reference table of the image methods (see `selfsup.bench`): every image method pretrained for the
same wall-clock budget, evaluated at 10 / 100 / all labels per class against the random-init and
supervised rows of its own encoder, and transferred to MNIST-5k. Resumable per method.

Usage: python benchmarks/methods.py [--methods rotation simclr] [--minutes 10] [--pretrain-seeds 0 1 2]
       [--force [--reuse-epochs] | --reevaluate]
Results: benchmarks/results/methods.{json,md}, label_efficiency.png, methods/NAME.json, methods/_baselines.json.
"""
import argparse

from selfsup.bench import run_bench

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--methods", nargs="+")
    p.add_argument("--minutes", type=float, default=10.0, help="pretraining wall-clock budget per method")
    p.add_argument("--pretrain-seeds", type=int, nargs="+", default=[0])
    p.add_argument("--quick", action="store_true", help="smoke run: small pool and data, one epoch")
    p.add_argument("--force", action="store_true", help="rerun methods that already have results")
    p.add_argument("--reuse-epochs", action="store_true",
                   help="rerun with the epochs of the method's existing row (for a change that leaves its step's cost alone)")
    p.add_argument("--reevaluate", action="store_true",
                   help="evaluate finished rows again from their run folders' weights, without pretraining "
                        "(for a change to evaluation alone, such as a wider tuning grid)")
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args()
    run_bench(a.methods, a.out, a.quick, force=a.force, minutes=a.minutes, pretrain_seeds=a.pretrain_seeds,
              reuse_epochs=a.reuse_epochs, reevaluate=a.reevaluate)
