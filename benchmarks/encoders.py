"""Encoder throughput on this machine: images/s for forward+backward+Adam step at batch 256, 28x28x1,
and the implied time of one Fashion-MNIST epoch (60,000 images). Picks the default encoder honestly.
Usage: python benchmarks/encoders.py   Results: benchmarks/results/encoders.{json,md}"""
import json
import platform
import time
from pathlib import Path

import torch

from selfsup.nets import build_encoder
from selfsup.utils import atomic_write_text

CONFIGS = [("convnet", {}), ("convnet", {"batch_norm": True}), ("convnet", {"widths": [64, 64, 128], "batch_norm": True}),
           ("resnet18", {}), ("vit_tiny", {})]


def images_per_second(name: str, kwargs: dict, batch: int = 256, seconds: float = 8.0) -> float:
    torch.manual_seed(0)
    enc = build_encoder(name, in_channels=1, image_size=28, **kwargs)
    head = torch.nn.Linear(enc.feature_dim(), 10)
    opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()))
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(head(enc(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return n * batch / (time.perf_counter() - t0)


if __name__ == "__main__":
    rows = []
    for name, kwargs in CONFIGS:
        ips = images_per_second(name, kwargs, seconds=4.0 if name == "resnet18" else 8.0)
        rows.append({"encoder": name, "kwargs": kwargs, "images_per_s": ips, "epoch_seconds": 60_000 / ips})
        print(rows[-1], flush=True)
    meta = {"machine": platform.platform(), "threads": torch.get_num_threads(), "torch": torch.__version__, "batch": 256}
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "encoders.json", json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = ["| encoder | options | images/s (fwd+bwd+step) | one Fashion-MNIST epoch |", "|---|---|---|---|"]
    lines += [f"| {r['encoder']} | {r['kwargs'] or 'defaults'} | {r['images_per_s']:.0f} | {r['epoch_seconds']:.0f} s |" for r in rows]
    atomic_write_text(out / "encoders.md", f"Batch 256, 28x28x1, {meta['threads']} threads, torch {meta['torch']}. "
                      "Made by `python benchmarks/encoders.py`.\n\n" + "\n".join(lines) + "\n")
