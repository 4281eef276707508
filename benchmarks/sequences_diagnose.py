"""Short diagnosis of a sequence method's frame features (issue 11, section 3): a few minutes, one seed.

    nice -n 19 .venv/bin/python benchmarks/sequences_diagnose.py cpc-sequence --steps 150
    nice -n 19 .venv/bin/python benchmarks/sequences_diagnose.py temporal-order --steps 150 --options '{"lr": 3e-4}'

Pretrains `method` for `--steps` steps on `--clips` sprite clips, then probes object-centred frames of held-out
clips at every block of its encoder, pretrained and at random init (same seed), with 100 labels per class:
linear probe and kNN tuned on a validation split of the labels (`tuned_feature_protocols`), so a block the
pretext task never trains, or trains away from what classifies frames, shows up against its random twin.
For temporal-order also the pretext accuracy on held-out tuples against the class prior. At every block also
`position_r2`: how well a ridge regression reads the sprites' positions from whole held-out frames, which
tells a pretext solved by tracking where objects are from one solved by telling what they are. Numbers from here
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
from selfsup.data.base import ImageData
from selfsup.data.sprites import VideoData, make_sprite_clips, object_frames
from selfsup.evaluate.budgets import tuned_feature_protocols
from selfsup.evaluate.features import extract_features
from selfsup.evaluate.finetune import fresh_copy
from selfsup.evaluate.sweep import draw_budget
from selfsup.methods.base import build_method
from selfsup.train import train_steps
from selfsup.utils import atomic_write_text, load_average
from sequences import order_accuracy  # benchmarks/, this script's folder


def ridge_r2(x_fit: torch.Tensor, y_fit: torch.Tensor, x_eval: torch.Tensor, y_eval: torch.Tensor,
             ridge: float) -> float:
    """Mean R^2 over y's columns of a ridge regression fit on (x_fit, y_fit), in its dual form (features can
    outnumber frames: conv1 gives 9,216)."""
    mean_x, mean_y = x_fit.mean(0), y_fit.mean(0)
    x_fit, x_eval, y_fit = x_fit - mean_x, x_eval - mean_x, y_fit - mean_y
    alpha = torch.linalg.solve(x_fit @ x_fit.T + ridge * torch.eye(len(x_fit), dtype=x_fit.dtype), y_fit)
    residual = ((x_eval @ (x_fit.T @ alpha) + mean_y - y_eval) ** 2).sum(0)
    return float((1 - residual / ((y_eval - y_eval.mean(0)) ** 2).sum(0)).mean())


def position_r2(model, video: VideoData, block: str) -> float:
    """How linearly the sprites' positions can be read from a block's features of whole frames: R^2 of a
    ridge regression (standardised features) from the frames of the first half of `video`'s clips to the
    objects' mean top-left (y, x), scored on the second half's frames, its ridge chosen on the first half (its
    first and second quarter). A pretext task solved by tracking where the objects are, rather than what
    they are, raises it."""
    n, t = video.clips.shape[:2]
    x = extract_features(model, ImageData(video.clips.flatten(0, 1)), upto=block).double()
    y = video.positions.flatten(0, 1).double().mean(1)  # (N * T, 2): the objects' mean (y, x), whichever is which
    clip = torch.arange(n * t) // t  # split by clip: no clip on both sides
    inner, fit, held = clip < n // 4, clip < n // 2, clip >= n // 2
    x = (x - x[fit].mean(0)) / x[fit].std(0).clamp_min(1e-6)
    ridges = [10.0 ** k for k in range(-1, 8)]
    ridge = max(ridges, key=lambda r: ridge_r2(x[inner], y[inner], x[fit & ~inner], y[fit & ~inner], r))
    return ridge_r2(x[fit], y[fit], x[held], y[held], ridge)


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
            report[f"{name} {block} ({pool_x.shape[1]}-d)"] = {k: round(v, 3) for k, v in accs.items()} | {
                "position_r2": round(position_r2(model, test_clips, block), 3)}
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["command"] = "benchmarks/sequences_diagnose.py " + " ".join(sys.argv[1:])
    print(json.dumps(report, indent=1))
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
