"""selfsup on a GPU: SimCLR against lightly on the same device, the SSL step against a bare step, a speedrun.

(a) SimCLR, ours (the Lightning trainer, uint8 data resident on the device, views made there) against
    lightly's documented pipeline (SimCLRTransform on PIL images in DataLoader workers, the model on the
    device), same run, same device, same precision, same encoder: the CIFAR-style ResNet-18 at 32x32 on
    Fashion-MNIST upscaled, and the RotNet-demo ConvNet at 28x28. Batch 512, 2 epochs each; images/s and
    kNN accuracy (k=200, cosine, T=0.07) computed by the same code for both sides. lightly's side is
    skipped, with a message, where lightly does not import.
(b) The SimCLR step against a bare forward+backward+step of its encoder on the same 2N views
    (benchmarks/speed_simclr.py's `step_overhead`, on the device).
(c) A speedrun: from the raw Fashion-MNIST IDX files to a linear-probe test accuracy, pretraining without
    labels (SimCLR), everything timed end to end; the target is under 60 s.

Results: benchmarks/results/gpu.json and gpu.md (with --quick: gpu_quick.*), the device named, the load
average before and after. The whole run is one command on one H100 (benchmarks/gpu_run.sh carries the
wheels it needs); here `--device cpu --quick` checks that every part runs, in about a minute.

    python benchmarks/gpu.py                          # on a GPU machine: the full run (< 8 minutes on an H100)
    python benchmarks/gpu.py --device cpu --quick     # a smoke run of every part
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed_simclr  # noqa: E402  (the CPU comparison's pieces: one implementation of each)

from selfsup.data.base import ImageData  # noqa: E402
from selfsup.data.sources import fashion_mnist  # noqa: E402
from selfsup.evaluate import extract_features  # noqa: E402
from selfsup.evaluate.linear import linear_probe  # noqa: E402
from selfsup.methods.base import build_method  # noqa: E402
from selfsup.train import TrainConfig, pretrain  # noqa: E402

RESULTS = speed_simclr.RESULTS
# (encoder, image size, encoder options): the ResNet at CIFAR's 32x32, the ConvNet at Fashion-MNIST's 28x28.
ENCODERS = [("resnet18", 32, {}), ("convnet", 28, {})]
QUICK_ENCODER_OPTIONS = {"resnet18": {"width": 8}, "convnet": {"widths": (8, 8, 8)}}  # --quick: tiny nets
SPEEDRUN_ENCODER = {"widths": (64, 128, 256), "batch_norm": True}


def upscaled(data: ImageData, size: int) -> ImageData:
    """The uint8 images resized (bilinear) to size x size, labels kept: Fashion-MNIST at CIFAR's 32x32."""
    if data.images.shape[-1] == size:
        return data
    chunks = [F.interpolate(part.float(), size=(size, size), mode="bilinear", align_corners=False)
              .round().clamp(0, 255).to(torch.uint8) for part in data.images.split(8192)]
    return ImageData(torch.cat(chunks), data.labels, data.classes, name=f"{data.name}-{size}px")


def lightly_importable() -> bool:
    return importlib.util.find_spec("lightly") is not None


def compare_with_lightly(train: ImageData, test: ImageData, encoder: str, options: dict, args: argparse.Namespace,
                         train_options: dict) -> dict:
    """(a) for one encoder: our run and, where lightly imports, lightly's, on the same device and data."""
    method = speed_simclr.build_simclr(train.spec, True, encoder, options)
    settings = speed_simclr.shared_settings(method, args.epochs, args.batch_size, 0, args.workers)
    settings.update(device=args.device, precision=args.precision, encoder_kwargs=options)
    print(f"(a) {encoder}: ours ...", flush=True)
    row = {"encoder": encoder, "image_size": train.images.shape[-1], "settings": settings,
           "ours": speed_simclr.run_ours(train, test, args.epochs, args.batch_size, True, 0, encoder, train_options,
                                         options)}
    if args.skip_lightly or not lightly_importable():
        row["lightly"] = {"skipped": "lightly is not importable here (benchmarks/gpu_run.sh installs its wheel)"
                          if not args.skip_lightly else "--skip-lightly"}
        print(f"(a) {encoder}: lightly skipped: {row['lightly']['skipped']}", flush=True)
        return row
    print(f"(a) {encoder}: lightly ...", flush=True)
    row["lightly"] = speed_simclr.run_lightly(train, test, settings, install=False, python=Path(sys.executable))
    row["speedup"] = row["ours"]["images_per_s"] / row["lightly"]["images_per_s"]
    return row


def speedrun(root: str | None, args: argparse.Namespace, train_options: dict) -> dict:
    """(c) Raw IDX files -> SimCLR pretraining (no labels) -> linear probe on all train labels -> test accuracy."""
    start = time.perf_counter()
    splits = fashion_mnist(root)
    train, test = splits.train, splits.test
    if args.quick:
        train, test = train.subset(torch.arange(min(len(train), 512))), test.subset(torch.arange(min(len(test), 256)))
    loaded = time.perf_counter()
    encoder_kwargs = QUICK_ENCODER_OPTIONS["convnet"] | {"batch_norm": True} if args.quick else SPEEDRUN_ENCODER
    method = build_method("simclr", train.spec, encoder_kwargs=encoder_kwargs)
    cfg = TrainConfig(epochs=args.speedrun_epochs, batch_size=args.batch_size, knn_every=0, progress_bar=False,
                      **train_options)
    result = pretrain(method, train, cfg, speed_simclr.WORK / "speedrun")
    pretrained = time.perf_counter()
    probe = linear_probe(extract_features(method, train), train.labels, extract_features(method, test), test.labels,
                         epochs=10, max_steps=200 if args.quick else 2000)
    end = time.perf_counter()
    return {"encoder": "convnet", "encoder_kwargs": encoder_kwargs, "epochs": args.speedrun_epochs,
            "train_images": len(train), "test_images": len(test), "linear_probe_acc": probe["acc"],
            "seconds": {"read_idx": loaded - start, "pretrain": pretrained - loaded, "probe": end - pretrained,
                        "total": end - start},
            "pretrain_images_per_s": result.images_per_s, "goal_seconds": 60.0, "moonshot_acc": 0.90}


def checked_precision(script: str, device: str, precision: str | None) -> str:
    """The precision to run `device` at (bf16-mixed on a GPU, 32-true on the CPU, unless given), after refusing in
    one line a CUDA device that torch does not see: the GPU scripts' shared start."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"{script}: --device {device} asked, but torch {torch.__version__} sees no CUDA device "
                         "here; run it on the GPU machine, or pass --device cpu for a smoke run")
    return precision or ("bf16-mixed" if device.startswith("cuda") else "32-true")


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU: {speed_simclr.machine_info()['cpu']} ({os.cpu_count()} cores)"


def write_markdown(report: dict, path: Path) -> None:
    load = report["load_average"]
    lines = ["# selfsup on a GPU: SimCLR vs lightly, step overhead, speedrun", ""]
    if report["quick"]:
        lines += ["**Quick smoke run** (tiny data and nets): checks that every part runs; not a benchmark.", ""]
    if "seconds" not in report:  # a run cut short: what finished is written, the rest is named as missing
        lines += ["**Partial run**: it stopped before every part finished; the parts below are those it completed.", ""]
    after, total = load.get("after", float("nan")), report.get("seconds", float("nan"))
    lines += [f"Device: **{report['device_name']}**, precision {report['precision']}, torch {report['torch']}. "
              f"Load average before {load['before']:.2f}, after {after:.2f}. "
              f"Batch {report['batch_size']}, {report['epochs']} epochs. Total {total:.0f} s.", "",
              "## (a) SimCLR: selfsup vs lightly on the same device", "",
              "| encoder | side | images/s | kNN acc | train s |", "|---|---|---|---|---|"]
    for row in report["comparison"]:
        for side in ("ours", "lightly"):
            r = row[side]
            if "skipped" in r:
                lines.append(f"| {row['encoder']} {row['image_size']}px | {side} | skipped: {r['skipped']} | | |")
            else:
                lines.append(f"| {row['encoder']} {row['image_size']}px | {side} | {r['images_per_s']:.0f} | "
                             f"{r['knn_acc']:.4f} | {r['train_seconds']:.1f} |")
        if "speedup" in row:
            lines.append(f"| | speed-up | {row['speedup']:.2f}x | | |")
    lines += ["", "## (b) SimCLR step vs a bare encoder step (same 2N views)", "",
              "| encoder | bare views/s | SimCLR views/s | keeps |", "|---|---|---|---|"]
    for name, a in report["step_overhead"].items():
        lines.append(f"| {name} | {a['bare_views_per_s']:.0f} | {a['simclr_views_per_s']:.0f} | {a['keeps']:.1%} |")
    s = report.get("speedrun")
    if s is None:
        path.write_text("\n".join(lines + ["", "(c) did not finish."]) + "\n")
        return
    lines += ["", "## (c) Speedrun: raw IDX files to a linear-probe accuracy, label-free pretraining", "",
              f"Linear-probe test accuracy **{s['linear_probe_acc']:.2%}** in **{s['seconds']['total']:.1f} s** end "
              f"to end (goal < {s['goal_seconds']:.0f} s; moonshot >= {s['moonshot_acc']:.0%}): reading the IDX "
              f"files {s['seconds']['read_idx']:.1f} s, SimCLR {s['epochs']} epochs on the ConvNet "
              f"{s['encoder_kwargs']} {s['seconds']['pretrain']:.1f} s ({s['pretrain_images_per_s']:.0f} images/s), "
              f"probe {s['seconds']['probe']:.1f} s."]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", help="default: bf16-mixed on a GPU, 32-true on the CPU")
    parser.add_argument("--quick", action="store_true", help="tiny data and nets, 1 epoch: checks that it all runs")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=8, help="lightly's DataLoader workers")
    parser.add_argument("--steps", type=int, default=30, help="timed steps for (b)")
    parser.add_argument("--speedrun-epochs", type=int, default=10)
    parser.add_argument("--data-root", help="folder of the Fashion-MNIST IDX files (default: the usual places)")
    parser.add_argument("--skip-lightly", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.precision = checked_precision("gpu.py", args.device, args.precision)
    if args.quick:
        args.epochs, args.batch_size, args.steps, args.speedrun_epochs, args.workers = 1, 64, 2, 1, 0
    train_options = {"accelerator": "gpu" if args.device.startswith("cuda") else "cpu", "precision": args.precision}
    load_before, start = os.getloadavg()[0], time.perf_counter()

    splits = fashion_mnist(args.data_root)
    train, test = splits.train, splits.test
    if args.quick:
        train, test = train.subset(torch.arange(min(len(train), 256))), test.subset(torch.arange(min(len(test), 128)))
    report: dict = {"quick": args.quick, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "device": args.device,
                    "device_name": device_name(args.device), "precision": args.precision, "epochs": args.epochs,
                    "batch_size": args.batch_size, "machine": speed_simclr.machine_info(),
                    "lightly": lightly_importable(), "comparison": [], "step_overhead": {}, "torch": torch.__version__,
                    "load_average": {"before": load_before}}
    stem = "gpu_quick" if args.quick else "gpu"
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        """Written after every part, so that a run stopped by its time limit still returns what it measured."""
        (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str))
        write_markdown(report, args.out / f"{stem}.md")

    for encoder, size, options in ENCODERS:
        options = QUICK_ENCODER_OPTIONS[encoder] if args.quick else options
        sized_train, sized_test = upscaled(train, size), upscaled(test, size)
        report["comparison"].append(compare_with_lightly(sized_train, sized_test, encoder, options, args,
                                                         train_options))
        print(f"(b) {encoder}: step overhead ...", flush=True)
        report["step_overhead"][encoder] = speed_simclr.step_overhead(
            sized_train, args.batch_size, True, 1 if args.quick else 5, args.steps, 0, args.device, encoder,
            args.precision, options)
        save()
    print("(c) speedrun ...", flush=True)
    report["speedrun"] = speedrun(args.data_root, args, train_options)
    report["seconds"] = time.perf_counter() - start
    report["load_average"]["after"] = os.getloadavg()[0]
    save()
    print((args.out / f"{stem}.md").read_text())
    return report


if __name__ == "__main__":
    main()
