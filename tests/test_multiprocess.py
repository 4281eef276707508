"""Multi-process training through Lightning's DDP on 2 CPU processes (gloo)."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import torch

from selfsup.train import InMemoryBatches
from conftest import synthetic_images


def batches_for(rank: int, world: int, data, epoch: int = 0) -> list[torch.Tensor]:
    module = SimpleNamespace(_trainer=SimpleNamespace(global_rank=rank, world_size=world), current_epoch=epoch,
                             device=torch.device("cpu"))
    return list(InMemoryBatches(data, batch_size=8, seed=0, module=module))


def test_each_process_gets_a_disjoint_shard_of_the_same_permutation():
    data = synthetic_images(n=100, classes=4)
    data.images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 1, 4, 4).contiguous()
    ids = lambda bs: torch.cat([b[:, 0, 0, 0] for b in bs]).tolist()
    r0, r1 = ids(batches_for(0, 2, data)), ids(batches_for(1, 2, data))
    assert len(r0) == len(r1) == 48  # 50 per shard, ragged last batch dropped
    assert not set(r0) & set(r1)
    assert ids(batches_for(0, 2, data)) == r0  # the same epoch gives the same order
    assert ids(batches_for(0, 2, data, epoch=1)) != r0  # the next epoch reshuffles


def test_two_process_ddp_run_on_gloo_finishes_with_one_run_folder(tmp_path):
    data = synthetic_images(n=512, classes=4)
    path = tmp_path / "d.npz"
    np.savez(path, images=data.images.numpy(), labels=data.labels.numpy())
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "selfsup.cli", "pretrain", "rotation", "--data", str(path), "--epochs", "2",
           "--batch-size", "64", "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu", "--run-dir", str(run),
           "--set", 'encoder_kwargs={"widths": [8, 8, 8]}', "--train-set", "knn_every=0", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("run folder:") == 1
    config = json.loads((run / "config.json").read_text())
    assert config["status"] == "done" and config["epochs_done"] == 2
    from selfsup.runs import load_checkpoint
    # 512 images minus the 100 held-out test images (25 of each class's 128) = 412 / 2 processes / batch 64
    # = 3 steps per epoch in each process
    assert config["data"]["pool_size"] == 412
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 6
