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
    p.add_argument("--epochs-scale", type=float, default=0.5,
                   help="fraction of each method's default epochs (0.5: the committed table, ~40 min on 2 cores)")
    a = p.parse_args()
    run_bench(a.methods, a.out, a.quick, force=a.force, epochs_scale=a.epochs_scale)
