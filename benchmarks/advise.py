"""`selfsup advise` on Fashion-MNIST with a 20-minute budget: which method it recommends, how sure it is, and
how long it really took (the budget binds pretraining; evaluation time is measured, not enforced).

    python benchmarks/advise.py                 # the full run: 20 min budget, about 30-40 min in all on 2 cores
    python benchmarks/advise.py --budget 2m --draws 2 --out /tmp/advise-check   # a quick check

The pool is Fashion-MNIST's 60,000 training images (labels unused for pretraining); labels are drawn from it
at 10 and 100 per class over 3 draws and scored on its 10,000 test images. Run folders (checkpoints) go to
`--runs` (not committed); the report (advice.md, advice.json, the per-method evaluations) to `--out`.
A rerun over a committed report is refused before anything is trained; `--overwrite` replaces it.
"""
import argparse
import time

from selfsup.advise import advise
from selfsup.utils import load_average

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="20m")
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--methods", nargs="+", help="default: what advise chooses for the data")
    p.add_argument("--out", default="benchmarks/results/advise-fashion-mnist")
    p.add_argument("--runs", default="/tmp/selfsup-advise-runs")
    p.add_argument("--overwrite", action="store_true", help="replace the report already in --out")
    args = p.parse_args()
    start, load = time.perf_counter(), load_average()
    report = advise("fashion-mnist", budget=args.budget, out=args.out, methods=args.methods, draws=args.draws,
                    runs_dir=args.runs, progress=lambda line: print(line, flush=True), overwrite=args.overwrite)
    print(report["recommendation"]["text"])
    print(f"{(time.perf_counter() - start) / 60:.1f} min for a {args.budget} budget; load average {load} -> "
          f"{load_average()}; report in {args.out}/advice.md")
