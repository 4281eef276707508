"""The method table: every registered image method pretrained with its default budget and evaluated on
Fashion-MNIST (see `selfsup.bench`). Usage: python benchmarks/methods.py [--methods rotation simclr] [--quick]
Results: benchmarks/results/methods.{json,md}, label_efficiency.png, methods/NAME.json."""
import argparse

from selfsup.bench import run_bench

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--methods", nargs="+")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--force", action="store_true", help="rerun methods that already have results")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--epochs-scale", type=float, default=1.0, help="e.g. 0.5: half of every method's default epochs")
    a = p.parse_args()
    run_bench(a.methods, a.out, a.quick, force=a.force, epochs_scale=a.epochs_scale)
