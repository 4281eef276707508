"""How fast is our SimCLR? Against a bare training step of its encoder, and against the `lightly` library.

(a) Step overhead, in one process, no trainer: the time of one SimCLR step on N images (two views made
    on the batch's device, the encoder on the 2N views, projection head, NT-Xent, backward, optimizer
    step) against a bare step of the same encoder on 2N ready-made float views (forward, a trivial mean
    loss, backward, the same optimizer's step). Both steps push 2N views through the encoder, so
    `keeps = t_bare / t_simclr` is the fraction of the bare per-view throughput that SimCLR keeps; the
    rest is augmentation, head and loss. Goal: keeps >= 0.80. Medians over `--steps` timed steps.
(b) Against lightly: our full pretraining (`selfsup.train.pretrain`, Lightning, in-memory uint8 data,
    augmentation on the device) against lightly's SimCLR (SimCLRTransform on PIL images in a 2-worker
    DataLoader, SimCLRProjectionHead, NTXentLoss, a plain loop, the way lightly's docs show), same
    encoder (the RotNet-demo ConvNet 64/32/16), optimizer, schedule, temperature, head, view strengths,
    batch 256 and epochs on Fashion-MNIST 60k. Images/s = training images seen / training wall time.
    Then kNN accuracy (k=200, cosine, T=0.07; 60k train bank, 10k test) of both encoders, computed here
    by `selfsup.evaluate.knn_classify` on features each side extracted. Goal: >= 3x lightly's images/s
    at equal or better kNN. Both sides train once per seed (`--seeds`, default 0 1 2): kNN accuracy
    moves by several tenths of a point from seed to seed, so one run each cannot say which is better.
    The issue's reference for lightly here: about 850 images/s and about 79.5%.
    The models are the same: our SimCLR head, like lightly's SimCLRProjectionHead (1.6), ends in
    Linear(no bias) + BatchNorm1d.

lightly runs under its own virtual environment, benchmarks/_venv_lightly (gitignored, not a project
dependency), which this script creates on first use. Results: benchmarks/results/speed_simclr.json and
speed_simclr.md. Timings mean something only on an otherwise idle machine: the load average before
and after is recorded next to them.

    .venv/bin/python benchmarks/speed_simclr.py              # the full comparison (5 epochs, 3 seeds each)
    .venv/bin/python benchmarks/speed_simclr.py --quick      # a smoke run of both sides in ~a minute
    .venv/bin/python benchmarks/speed_simclr.py --skip-lightly --epochs 1
    .venv/bin/python benchmarks/speed_simclr.py --rerun ours   # after changing our side: lightly's runs are kept

Every full run is kept in benchmarks/results/speed_simclr_runs/ (side, seed, settings, git commit) and
reused while the settings match, unless --rerun names its side.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from selfsup.data.base import ImageData
from selfsup.data.sources import fashion_mnist
from selfsup.evaluate import extract_features, knn_classify
from selfsup.methods.base import Method, build_method
from selfsup.nets.base import choose_memory_layout
from selfsup.train import TrainConfig, pretrain

HERE = Path(__file__).resolve().parent
LIGHTLY_VENV = HERE / "_venv_lightly"
LIGHTLY_SCRIPT = HERE / "_lightly_simclr.py"
LIGHTLY_PACKAGES = ["torch==2.14.1", "torchvision==0.29.1", "lightly"]
WORK = HERE / "_work"  # gitignored scratch: data dump, run folders, lightly features
RESULTS = HERE / "results"
ENCODER = {"widths": (64, 32, 16)}  # the RotNet-demo ConvNet the comparison is specified for
REFERENCE_LIGHTLY = {"images_per_s": 850.0, "knn_acc": 0.795}  # measured here on a quiet machine, 5 epochs


# --- settings ----------------------------------------------------------------------------------------
def build_simclr(spec: Any, batch_norm: bool, encoder: str = "convnet", encoder_kwargs: dict | None = None) -> Method:
    """Our SimCLR on `encoder` (default: the RotNet-demo ConvNet this comparison is specified for)."""
    kwargs = dict(ENCODER, batch_norm=batch_norm) if encoder == "convnet" else {}  # the ResNet always has BatchNorm
    kwargs.update(encoder_kwargs or {})
    return build_method("simclr", spec, encoder=encoder, encoder_kwargs=kwargs)


def projection_head_shape(method: Method) -> dict:
    """The projector's layer sizes, read from its Linear layers, so lightly builds the same head."""
    linears = [m for m in method.projector.modules() if isinstance(m, nn.Linear)]
    has_bn = any(isinstance(m, nn.BatchNorm1d) for m in method.projector.modules())
    return {"input_dim": linears[0].in_features, "hidden_dim": linears[0].out_features,
            "output_dim": linears[-1].out_features, "num_layers": len(linears), "batch_norm": has_bn}


def shared_settings(method: Method, epochs: int, batch_size: int, seed: int, workers: int) -> dict:
    """Everything the lightly side needs to train the same model the same way, from our method."""
    cfg = method.config
    return {
        "epochs": epochs, "batch_size": batch_size, "seed": seed, "num_workers": workers,
        "encoder": cfg.encoder, "widths": list(cfg.encoder_kwargs.get("widths", ())),
        "encoder_batch_norm": cfg.encoder_kwargs.get("batch_norm", True),
        "head": projection_head_shape(method), "temperature": cfg.temperature,
        "optimizer": cfg.optimizer, "lr": cfg.lr, "momentum": cfg.momentum, "weight_decay": cfg.weight_decay,
        "schedule": cfg.schedule, "warmup_epochs": cfg.warmup_epochs, "views": asdict(method.view_config),
    }


# --- (a) step overhead ---------------------------------------------------------------------------------
def interleaved_medians(steps_by_name: dict[str, Callable[[], None]], warmup: int, rounds: int,
                        sync: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Median seconds of each step, timed in alternation (A, B, C, A, B, C, ...) so that a burst of
    load on the machine slows all of them alike instead of whichever happened to be running. `sync`
    waits for queued device work (torch.cuda.synchronize on a GPU) before a clock is read."""
    for _ in range(warmup):
        for step in steps_by_name.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps_by_name}
    for _ in range(rounds):
        for name, step in steps_by_name.items():
            sync()
            start = time.perf_counter()
            step()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def step_overhead(train: ImageData, batch_size: int, batch_norm: bool, warmup: int, steps: int,
                  seed: int, device: str = "cpu", encoder: str = "convnet", precision: str = "32-true",
                  encoder_kwargs: dict | None = None) -> dict:
    """Median seconds of a SimCLR step on N images vs a bare encoder step on 2N views (see the docstring),
    on `device`; with precision "bf16-mixed" both steps run under bf16 autocast."""
    torch.manual_seed(seed)
    batch = train.batch(torch.randperm(len(train))[:batch_size]).to(device)
    build = lambda: build_simclr(train.spec, batch_norm, encoder, encoder_kwargs).to(device)  # noqa: E731
    method = build().train()
    choose_memory_layout(method, torch.device(device).type)
    optimizer = torch.optim.Adam(method.trainable_parameters(), lr=method.config.lr,
                                 weight_decay=method.config.weight_decay)

    autocast = lambda: torch.autocast(torch.device(device).type, torch.bfloat16, enabled="bf16" in precision)  # noqa: E731

    def simclr_step() -> None:
        with autocast():
            loss, _ = method.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.after_step(0.5)

    bare = build().encoder.train()
    choose_memory_layout(bare, torch.device(device).type)
    bare_optimizer = torch.optim.Adam(bare.parameters(), lr=method.config.lr, weight_decay=method.config.weight_decay)
    with torch.no_grad():
        views = torch.cat(method.make_views(batch))  # 2N ready-made views: no augmentation in the bare step

    def bare_step() -> None:
        with autocast():
            loss = bare(views).float().mean()
        bare_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        bare_optimizer.step()

    def augment_only() -> None:
        with torch.no_grad():
            method.make_views(batch)

    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    medians = interleaved_medians({"simclr": simclr_step, "bare": bare_step, "augment": augment_only},
                                  warmup, steps, sync)
    t_simclr, t_bare, t_augment = medians["simclr"], medians["bare"], medians["augment"]
    return {
        "batch_images": batch_size, "views_per_step": 2 * batch_size,
        "simclr_step_s": t_simclr, "bare_step_s": t_bare, "augment_s": t_augment,
        "simclr_images_per_s": batch_size / t_simclr, "simclr_views_per_s": 2 * batch_size / t_simclr,
        "bare_views_per_s": 2 * batch_size / t_bare, "keeps": t_bare / t_simclr, "goal_keeps": 0.80,
    }


# --- (b) full runs ----------------------------------------------------------------------------------------
def run_ours(train: ImageData, test: ImageData, epochs: int, batch_size: int, batch_norm: bool,
             seed: int, encoder: str = "convnet", train_options: dict | None = None,
             encoder_kwargs: dict | None = None) -> dict:
    """Our SimCLR through the trainer (`train_options`: e.g. accelerator, precision), then its kNN accuracy
    (features extracted on the GPU when it trained there)."""
    torch.manual_seed(seed)
    method = build_simclr(train.spec, batch_norm, encoder, encoder_kwargs)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, knn_every=0, progress_bar=False,
                      **(train_options or {}))
    run_dir = WORK / f"run-ours-{encoder}-seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, never a resumed one
    result = pretrain(method, train, cfg, run_dir)
    device = "cuda" if (train_options or {}).get("accelerator") == "gpu" else "cpu"
    method.to(device)
    knn = knn_classify(extract_features(method, train, device=device), train.labels,
                       extract_features(method, test, device=device), test.labels, k=200, temperature=0.07)
    return {"train_seconds": result.seconds, "images_per_s": result.images_per_s,
            "images_seen": (len(train) // batch_size) * batch_size * epochs, "knn_acc": knn["acc"],
            "torch_threads": torch.get_num_threads(), "final_metrics": result.final}


def lightly_python(install: bool) -> Path:
    """The lightly venv's python, creating the venv (pinned torch/torchvision + lightly) when missing."""
    python = LIGHTLY_VENV / "bin" / "python"
    probe = [str(python), "-c", "import lightly, torchvision"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    if not install:
        raise SystemExit(f"{LIGHTLY_VENV} has no working lightly; run without --no-install to create it")
    print(f"creating {LIGHTLY_VENV} (torch, torchvision, lightly; a few minutes) ...", flush=True)
    # The system python3, not this venv's: the lightly venv must not inherit the project's packages.
    subprocess.run(["python3", "-m", "venv", str(LIGHTLY_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *LIGHTLY_PACKAGES], check=True)
    return python


def run_lightly(train: ImageData, test: ImageData, settings: dict, install: bool, python: Path | None = None) -> dict:
    """lightly's side in a subprocess of `python` (default: the lightly venv's, made when `install`)."""
    python = python or lightly_python(install)
    WORK.mkdir(parents=True, exist_ok=True)
    data, settings_file = WORK / "fashion_mnist.npz", WORK / "lightly_settings.json"
    result_file, features_file = WORK / "lightly_result.json", WORK / "lightly_features.npz"
    np.savez(data, train_images=train.images[:, 0].numpy(), train_labels=train.labels.numpy(),
             test_images=test.images[:, 0].numpy(), test_labels=test.labels.numpy())
    settings_file.write_text(json.dumps(settings, indent=2))
    subprocess.run([str(python), str(LIGHTLY_SCRIPT), "--data", str(data), "--settings", str(settings_file),
                    "--result", str(result_file), "--features", str(features_file)], check=True)
    result = json.loads(result_file.read_text())
    features = np.load(features_file)
    knn = knn_classify(torch.from_numpy(features["train"]), train.labels, torch.from_numpy(features["test"]),
                       test.labels, k=200, temperature=0.07)
    return dict(result, knn_acc=knn["acc"])


def over_seeds(side: str, seeds: list[int], run: Callable[[int], dict], runs_dir: Path, fingerprint: dict,
               rerun: bool) -> dict:
    """One full run per seed; the mean and sample std of images/s and kNN accuracy over them.

    Each run is kept in `runs_dir/{side}-seed{seed}.json` with the settings it ran under and the git commit
    of this repository, and reused by later calls with the same settings unless `rerun`: adding seeds,
    or rerunning one side after a change to it, does not repeat the other side's ten-minute runs.
    """
    runs = []
    for seed in seeds:
        path = runs_dir / f"{side}-seed{seed}.json"
        kept = json.loads(path.read_text()) if path.exists() and not rerun else None
        if kept is not None and kept.get("fingerprint") == fingerprint:
            print(f"(b) {side}, seed {seed}: reusing {path} (commit {kept.get('git_commit')})", flush=True)
        else:
            print(f"(b) {side}, seed {seed} ...", flush=True)
            kept = dict(run(seed), seed=seed, fingerprint=fingerprint, git_commit=git_commit(),
                        date=time.strftime("%Y-%m-%d %H:%M:%S"), load_average_after=os.getloadavg()[0])
            runs_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(kept, indent=2, default=str))
        runs.append(kept)
        print(json.dumps({k: v for k, v in kept.items() if k not in ("final_metrics", "fingerprint")}), flush=True)
    summary: dict[str, Any] = {"seeds": seeds, "runs": runs}
    for key in ("images_per_s", "knn_acc", "train_seconds"):
        values = [r[key] for r in runs]
        summary[key] = statistics.mean(values)
        summary[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return summary


def git_commit() -> str:
    """HEAD of this repository, with "+changes" when the working tree differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


# --- report ---------------------------------------------------------------------------------------------
def machine_info() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}


def write_markdown(report: dict, path: Path) -> None:
    lines = ["# SimCLR speed: selfsup vs a bare step vs lightly", ""]
    if report["quick"]:
        lines += ["**Quick smoke run** (tiny data, 1 epoch): checks that both sides run; the numbers are not "
                  "a benchmark.", ""]
    load = report["load_average"]
    lines += [f"Machine: {report['machine']['cpu']}, {report['machine']['cpu_count']} cores, "
              f"torch {report['machine']['torch']}. Load average before {load['before']:.2f}, after "
              f"{load['after']:.2f} (timings are only meaningful when both are well below the core count).",
              f"Settings: {report['settings']['epochs']} epochs, batch {report['settings']['batch_size']}, "
              f"{report['train_images']} train / {report['test_images']} test images, encoder ConvNet "
              f"{report['settings']['widths']} (BatchNorm {report['settings']['encoder_batch_norm']}), head "
              f"{report['settings']['head']}, temperature {report['settings']['temperature']}, "
              f"{report['settings']['optimizer']} lr {report['settings']['lr']} ({report['settings']['schedule']}).", ""]
    a = report.get("step_overhead")
    if a:
        lines += ["## (a) SimCLR step vs bare encoder step (same 2N views through the encoder)", "",
                  "| step | median s | views/s | images/s |", "|---|---|---|---|",
                  f"| bare encoder fwd+bwd+Adam on {a['views_per_step']} ready views | {a['bare_step_s']:.4f} | "
                  f"{a['bare_views_per_s']:.0f} | {a['bare_views_per_s'] / 2:.0f} |",
                  f"| SimCLR on {a['batch_images']} images (views+encoder+head+NT-Xent+Adam) | "
                  f"{a['simclr_step_s']:.4f} | {a['simclr_views_per_s']:.0f} | {a['simclr_images_per_s']:.0f} |",
                  f"| of which: making the two views | {a['augment_s']:.4f} | | |", "",
                  f"SimCLR keeps **{a['keeps']:.1%}** of the bare per-view throughput (goal >= "
                  f"{a['goal_keeps']:.0%}).", ""]
    ours, theirs = report.get("ours"), report.get("lightly")
    if ours or theirs:
        lines += ["## (b) Full pretraining + kNN (k=200, cosine, T=0.07), one run per seed", "",
                  "| side | seeds | train wall s (mean) | images/s | kNN acc | kNN per seed |", "|---|---|---|---|---|---|"]
        for name, r in (("selfsup (Lightning trainer)", ours), ("lightly (DataLoader, 2 workers)", theirs)):
            if r:
                per_seed = ", ".join(f"{run['knn_acc']:.4f}" for run in r["runs"])
                lines.append(f"| {name} | {r['seeds']} | {r['train_seconds']:.1f} | {r['images_per_s']:.0f} "
                             f"± {r['images_per_s_std']:.0f} | {r['knn_acc']:.4f} ± {r['knn_acc_std']:.4f} | {per_seed} |")
        if ours and theirs:
            c = report["comparison"]
            lines += ["", f"Speed-up {c['speedup']:.2f}x (goal >= 3x); kNN difference of the means "
                          f"{c['knn_difference']:+.4f} (goal >= 0)."]
        if theirs:
            lines += ["", f"lightly side versions: {theirs['runs'][0]['versions']}. Both heads end in "
                          "Linear(no bias) + BatchNorm1d (ours since this comparison; lightly's SimCLRProjectionHead)."]
        lines += ["", f"The issue's reference for lightly here: about {REFERENCE_LIGHTLY['images_per_s']:.0f} images/s, "
                      f"kNN about {REFERENCE_LIGHTLY['knn_acc']:.1%}."]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one full run per seed and side")
    parser.add_argument("--workers", type=int, default=2, help="lightly DataLoader workers (its docs' way)")
    parser.add_argument("--no-batch-norm", action="store_true",
                        help="ConvNet without BatchNorm (default: with, as our SimCLR uses)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps for (a)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: 2048 train / 1000 test, 1 epoch")
    parser.add_argument("--skip-lightly", action="store_true")
    parser.add_argument("--skip-ours", action="store_true")
    parser.add_argument("--rerun", nargs="*", choices=["ours", "lightly"], default=[],
                        help="run these sides again instead of reusing their kept runs (after changing them)")
    parser.add_argument("--no-install", action="store_true", help="fail instead of creating the lightly venv")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    splits = fashion_mnist()
    train, test = splits.train, splits.test
    epochs, steps, warmup = args.epochs, args.steps, 3
    if args.quick:
        train, test = train.subset(torch.arange(2048)), test.subset(torch.arange(1000))
        epochs, steps, warmup = 1, 3, 1
    batch_norm = not args.no_batch_norm
    load_before = os.getloadavg()[0]
    probe = build_simclr(train.spec, batch_norm)
    settings = shared_settings(probe, epochs, args.batch_size, args.seeds[0], args.workers)
    report: dict = {"quick": args.quick, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_info(),
                    "settings": settings, "train_images": len(train), "test_images": len(test)}
    if not args.skip_ours:
        print("(a) step overhead ...", flush=True)
        report["step_overhead"] = step_overhead(train, args.batch_size, batch_norm, warmup, steps, args.seeds[0])
        print(json.dumps(report["step_overhead"]), flush=True)
    runs_dir = args.out / ("speed_simclr_runs_quick" if args.quick else "speed_simclr_runs")
    # Through JSON, so it compares equal to the copy read back from a kept run (tuples become lists).
    fingerprint = json.loads(json.dumps(dict(settings, seed=None, train_images=len(train), test_images=len(test))))
    if not args.skip_ours:
        report["ours"] = over_seeds("ours", args.seeds, lambda seed: run_ours(
            train, test, epochs, args.batch_size, batch_norm, seed), runs_dir, fingerprint, "ours" in args.rerun)
    if not args.skip_lightly:
        report["lightly"] = over_seeds("lightly", args.seeds, lambda seed: run_lightly(
            train, test, dict(settings, seed=seed), install=not args.no_install), runs_dir, fingerprint,
            "lightly" in args.rerun)
    if "ours" in report and "lightly" in report:
        report["comparison"] = {
            "speedup": report["ours"]["images_per_s"] / report["lightly"]["images_per_s"], "goal_speedup": 3.0,
            "knn_difference": report["ours"]["knn_acc"] - report["lightly"]["knn_acc"]}
    report["load_average"] = {"before": load_before, "after": os.getloadavg()[0]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed_simclr.json").write_text(json.dumps(report, indent=2, default=str))
    write_markdown(report, args.out / "speed_simclr.md")
    print((args.out / "speed_simclr.md").read_text())
    return report


if __name__ == "__main__":
    main()
