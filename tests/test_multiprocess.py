"""Multi-process training through Lightning's DDP on 2 CPU processes (gloo)."""
import json
import os
import subprocess
import sys
from pathlib import Path
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


def test_sigterm_to_rank_0_mid_epoch_saves_at_that_step_and_every_process_stops(tmp_path):
    """DDP on 2 gloo processes: SIGTERM to rank 0 (what a scheduler sends) in the middle of the first epoch.
    Every process agrees on the step, rank 0 writes last.ckpt there, the run exits 143 and nothing hangs."""
    import signal
    import time
    from selfsup.runs import load_checkpoint
    data = synthetic_images(n=1024, classes=4)  # (1024 - 100 test) / 2 processes / batch 8 = 57 steps per epoch
    path = tmp_path / "d.npz"
    np.savez(path, images=data.images.numpy(), labels=data.labels.numpy())
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "selfsup.cli", "pretrain", "rotation", "--data", str(path), "--epochs", "3",
           "--batch-size", "8", "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu", "--run-dir", str(run),
           "--set", 'encoder_kwargs={"widths": [4, 4, 4]}', "--train-set", "knn_every=0",
           "--train-set", "checkpoint_every_steps=2", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)  # its own process group: rank 1 is in it too
    last = run / "checkpoints" / "last.ckpt"
    start = time.monotonic()
    while not last.exists() and process.poll() is None and time.monotonic() - start < 240:
        time.sleep(0.02)  # the first checkpoint (step 2) is there: training is under way in both processes
    process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError("the run hung after SIGTERM")
    assert process.returncode == 128 + signal.SIGTERM, err[-3000:]
    deadline = time.monotonic() + 60
    while (leftover := group_alive(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.2)  # rank 1 may take a moment longer to leave
    if leftover:
        os.killpg(process.pid, signal.SIGKILL)
    assert not leftover, "a DDP process outlived the run"
    config = json.loads((run / "config.json").read_text())
    step = load_checkpoint(last)["global_step"]
    assert config["status"] == "interrupted" and f"SIGTERM at epoch 0, step {step}: checkpoint saved" in config["reason"]
    assert 2 < step < 57  # saved after the signal, at the step the processes stopped, in the middle of the epoch


def group_alive(group: int) -> bool:
    """Whether a live (not zombie) process is left in process group `group`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False
