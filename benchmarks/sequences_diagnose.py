"""Short diagnosis of a sequence method's frame features (issue 11, section 3): a few minutes, one seed.

    nice -n 19 .venv/bin/python benchmarks/sequences_diagnose.py cpc-sequence --steps 150
    nice -n 19 .venv/bin/python benchmarks/sequences_diagnose.py temporal-order --steps 150 --options '{"lr": 3e-4}'

Pretrains `method` for `--steps` steps on `--clips` sprite clips, then probes object-centred frames of held-out
clips at every block of its encoder, pretrained and at random init (same seed), with 100 labels per class:
linear probe and kNN tuned on a validation split of the labels (`tuned_feature_protocols`), so a block the
pretext task never trains, or trains away from what classifies frames, shows up against its random twin.
For temporal-order also the pretext accuracy on held-out tuples against the class prior. Numbers from here
are diagnoses (one seed, small data), not results: the README quotes benchmarks/sequences.py.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from selfsup.data.sources import fashion_mnist
from selfsup.data.sprites import make_sprite_clips, object_frames
from selfsup.evaluate.budgets import tuned_feature_protocols
from selfsup.evaluate.features import extract_features
from selfsup.evaluate.finetune import fresh_copy
from selfsup.evaluate.sweep import draw_budget
from selfsup.methods.base import build_method
from selfsup.train import train_steps
from selfsup.utils import atomic_write_text, load_average
from sequences import order_accuracy  # benchmarks/, this script's folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", choices=["temporal-order", "cpc-sequence", "tracking-colorization"])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--clips", type=int, default=600)
    parser.add_argument("--options", default="{}", help="method config overrides as JSON, e.g. '{\"lr\": 3e-4}'")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the report there as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    parts = fashion_mnist()
    clips = lambda src, n, seed, colors=False: make_sprite_clips(src.images, src.labels, n, classes=src.classes,
                                                                 colors=colors, seed=seed)
    train = clips(parts.train, args.clips, 0, colors=args.method == "tracking-colorization")
    pool = object_frames(clips(parts.train, args.clips, 0), frames_per_object=2)
    test_clips = clips(parts.test, args.clips // 3, 1)
    test = object_frames(test_clips, frames_per_object=1)
    torch.manual_seed(0)
    method = build_method(args.method, train.spec, **json.loads(args.options))
    random_init = fresh_copy(method, seed=0)
    report = {"method": args.method, "options": json.loads(args.options), "steps": args.steps, "batch": args.batch,
              "pretrain": train_steps(method, train, args.steps, args.batch), "load_average": load_average()}
    if args.method == "temporal-order":  # measured as the benchmark measures it
        report["pretext"] = order_accuracy(method, test_clips)
    index = draw_budget(pool.labels, 100, 0)
    for name, model in (("pretrained", method), ("random init", random_init)):
        for block in model.encoder.block_names:
            pool_x, test_x = extract_features(model, pool, upto=block), extract_features(model, test, upto=block)
            accs, _ = tuned_feature_protocols(pool_x[index], pool.labels[index], test_x, test.labels, ("linear", "knn"), 0)
            report[f"{name} {block} ({pool_x.shape[1]}-d)"] = {k: round(v, 3) for k, v in accs.items()}
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["command"] = "benchmarks/sequences_diagnose.py " + " ".join(sys.argv[1:])
    print(json.dumps(report, indent=1))
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
