"""benchmarks/gpu.py --device cpu --quick: every part runs on tiny data and writes its JSON and markdown.
lightly is not installed here, so its side must skip with a message instead of failing. No GPU is touched."""
from __future__ import annotations

import gzip
import importlib.util
import json
import struct
from pathlib import Path

import pytest
import torch

from conftest import synthetic_images

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_idx(path: Path, array: torch.Tensor) -> None:
    """An IDX file as Fashion-MNIST ships it (gzip, big-endian header, unsigned bytes)."""
    header = bytes([0, 0, 0x08, array.dim()]) + struct.pack(f">{array.dim()}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.to(torch.uint8).numpy().tobytes()))


def tiny_fashion_mnist(root: Path) -> Path:
    root.mkdir()
    for prefix, n, seed in (("train", 320, 0), ("t10k", 160, 1)):
        data = synthetic_images(n=n, seed=seed)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", data.images[:, 0])
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", data.labels)
    return root


@pytest.mark.slow
def test_quick_cpu_run_writes_every_part(tmp_path, monkeypatch):
    gpu = load_script()
    monkeypatch.setattr(gpu.speed_simclr, "WORK", tmp_path / "work")
    report = gpu.main(["--device", "cpu", "--quick", "--data-root", str(tiny_fashion_mnist(tmp_path / "fm")),
                       "--out", str(tmp_path / "out")])
    saved = json.loads((tmp_path / "out" / "gpu_quick.json").read_text())
    assert saved["device"] == "cpu" and saved["device_name"].startswith("CPU")
    assert set(saved["load_average"]) == {"before", "after"}
    assert [row["encoder"] for row in saved["comparison"]] == ["resnet18", "convnet"]
    assert [row["image_size"] for row in saved["comparison"]] == [32, 28]  # the ResNet on upscaled images
    for row in saved["comparison"]:
        assert row["ours"]["images_per_s"] > 0 and 0 <= row["ours"]["knn_acc"] <= 1
        if not gpu.lightly_importable():
            assert "not importable" in row["lightly"]["skipped"]
    assert set(saved["step_overhead"]) == {"resnet18", "convnet"}
    assert saved["speedrun"]["train_images"] == 320 and 0 <= saved["speedrun"]["linear_probe_acc"] <= 1
    assert saved["speedrun"]["seconds"]["total"] >= saved["speedrun"]["seconds"]["pretrain"] > 0
    markdown = (tmp_path / "out" / "gpu_quick.md").read_text()
    assert "Quick smoke run" in markdown and "(c) Speedrun" in markdown and report["quick"]


def test_upscaled_images_keep_labels_and_uint8():
    gpu = load_script()
    data = synthetic_images(n=4)
    big = gpu.upscaled(data, 32)
    assert big.images.shape == (4, 1, 32, 32) and big.images.dtype == torch.uint8
    assert torch.equal(big.labels, data.labels) and gpu.upscaled(data, 28) is data
    flat = type(data)(torch.full((2, 1, 28, 28), 77, dtype=torch.uint8))
    assert (gpu.upscaled(flat, 32).images == 77).all()  # bilinear resizing keeps a flat image flat


def test_cuda_asked_on_a_machine_without_cuda_refuses_in_one_line_before_reading_data(tmp_path, monkeypatch):
    gpu = load_script()
    monkeypatch.setattr(gpu.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as refused:
        gpu.main(["--device", "cuda", "--data-root", str(tmp_path / "no-data-here"), "--out", str(tmp_path / "out")])
    message = str(refused.value)
    assert "--device cuda" in message and "no CUDA device" in message and "--device cpu" in message
    assert "\n" not in message and not (tmp_path / "out").exists()


def test_gpu_budget_skips_a_run_that_would_pass_its_deadline(tmp_path, monkeypatch):
    """benchmarks/gpu_budget.py: a run estimated (from the previous run's seconds per epoch and evaluation) to end
    after --deadline-s is skipped and named so, and the results are written after each run."""
    spec = importlib.util.spec_from_file_location("gpu_budget", ROOT / "benchmarks" / "gpu_budget.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    train = synthetic_images(n=40, seed=0)
    splits = type("Splits", (), {"train": train, "test": train})()
    monkeypatch.setattr(script, "load_dataset", lambda name: splits)
    monkeypatch.setattr(script, "held_out_test", lambda data: type("Held", (), {"rest": train})())
    calls = []

    def fake_run(method, epochs, train_options, test_data, pool_size, device, budgets):
        calls.append(epochs)
        return {"epochs": epochs, "pretrain_seconds": 1.0 * epochs, "seconds_per_epoch": 1.0, "eval_seconds": 5.0,
                "images_per_s": 1.0, "monitor": [], "summary": [
                    {"protocol": "linear", "labels_per_class": "all", "mean": 0.5, "std": 0.0, "n": 3}]}

    monkeypatch.setattr(script, "pretrain_and_evaluate", fake_run)
    # 2 epochs "take" no real time; 20 more are estimated at 1.2 x (20 x 1 s + 5 s) = 30 s > the 10 s deadline
    report = script.main(["--device", "cpu", "--epochs", "2", "20", "--deadline-s", "10", "--out", str(tmp_path)])
    assert calls == [2]
    assert report["runs"][1] == {"epochs": 20, "skipped": "needs about 30 s, 10 s left"}
    saved = json.loads((tmp_path / "gpu_budget.json").read_text())
    assert [r["epochs"] for r in saved["runs"]] == [2, 20] and "skipped: needs about 30 s" in \
        (tmp_path / "gpu_budget.md").read_text()
