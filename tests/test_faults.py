"""Faults an operator meets: signals, kills at any step, a kill during a checkpoint write, a full disk.

Each run here is the tiny rotation task (4 steps per epoch), so a whole fault-and-resume cycle takes a
second or two. "Bit-identical" means torch.equal on every tensor of the method's state.
"""
from __future__ import annotations

import errno
import json
import os
import random
import signal

import pytest
import torch

import selfsup.runs
import selfsup.train
from selfsup.errors import RunInterrupted, SelfSupError
from selfsup.methods import build_method
from selfsup.runs import RunFolder, load_checkpoint
from selfsup.train import TrainConfig
from selfsup.train import pretrain as fit
from conftest import TINY, synthetic_images

QUIET = {"progress_bar": False, "knn_every": 0}
DATA = synthetic_images(n=256, classes=4)  # 4 steps per epoch at batch 64
EPOCHS = 3


def run_fit(run_dir, resume=False, **train):
    torch.manual_seed(0)
    method = build_method("rotation", DATA.spec, **TINY)
    return fit(method, DATA, TrainConfig(**{"epochs": EPOCHS, "batch_size": 64, "seed": 0} | QUIET | train), run_dir,
               resume=resume)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run every resumed run must equal, bit for bit."""
    return run_fit(tmp_path_factory.mktemp("straight") / "run").method.state_dict()


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def fault_at_step(monkeypatch, step: int, fault) -> None:
    """Call `fault()` right after training step `step` (counted over the whole run, from 1)."""
    real, calls = selfsup.train.PretrainModule.training_step, []

    def training_step(self, batch, batch_idx):
        real(self, batch, batch_idx)
        calls.append(1)
        if len(calls) == step:
            fault()

    monkeypatch.setattr(selfsup.train.PretrainModule, "training_step", training_step)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_epoch_saves_at_that_step_stops_non_zero_and_resume_is_bit_identical(
        signum, code, straight, tmp_path, monkeypatch):
    fault_at_step(monkeypatch, 6, lambda: os.kill(os.getpid(), signum))  # epoch 1, its 2nd batch
    with pytest.raises(RunInterrupted) as stopped:
        run_fit(tmp_path / "run")
    assert stopped.value.exit_code == code and signal.Signals(signum).name in str(stopped.value)
    assert signal.getsignal(signum) is not None and signal.getsignal(signum) != selfsup.train.StopSignals._handle
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert state["selfsup_position"]["batches_done"] == 2 and state["epoch"] == 1
    record = RunFolder(tmp_path / "run").read_config()
    assert record["status"] == "interrupted" and "RunInterrupted" in record["reason"]
    monkeypatch.undo()
    resumed = run_fit(tmp_path / "run", resume=True)
    assert_bit_identical(straight, resumed.method.state_dict())
    assert RunFolder(tmp_path / "run").read_config()["status"] == "done"


def test_step_checkpoints_let_a_crash_at_a_random_step_resume_bit_identical(straight, tmp_path, monkeypatch):
    # after the first epoch, and so that the last step-checkpoint (one step before) is not an epoch end
    crash_step = random.Random(12).choice([6, 7, 10, 11])

    def crash():
        raise RuntimeError("simulated crash")

    fault_at_step(monkeypatch, crash_step, crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_fit(tmp_path / "run", checkpoint_every_steps=1)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert 0 < state["selfsup_position"]["batches_done"] < 4  # a mid-epoch checkpoint
    record = RunFolder(tmp_path / "run").read_config()
    assert record["status"] == "failed" and "simulated crash" in record["reason"]
    monkeypatch.undo()
    assert_bit_identical(straight, run_fit(tmp_path / "run", resume=True).method.state_dict())


def test_resume_keeps_the_earlier_rows_of_metrics_csv(tmp_path, monkeypatch):
    fault_at_step(monkeypatch, 6, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(RunInterrupted):
        run_fit(tmp_path / "run", log_every_n_steps=1)
    before = RunFolder(tmp_path / "run").read_metrics()
    assert any(row.get("epoch") == "0" for row in before)
    monkeypatch.undo()
    run_fit(tmp_path / "run", resume=True, log_every_n_steps=1)
    after = RunFolder(tmp_path / "run").read_metrics()
    assert after[:len(before)] == [dict(row, **{k: "" for k in after[0] if k not in row}) for row in before]
    assert {row["epoch"] for row in after} >= {"0", "1", "2"}


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    run_fit(tmp_path / "run")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    previous = last.read_bytes()

    def killed_mid_write(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # the process dies here, after part of the new file was written

    monkeypatch.setattr(selfsup.runs, "save_file", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        selfsup.runs.save_checkpoint({"w": torch.ones(2)}, last)
    assert last.read_bytes() == previous and load_checkpoint(last)["global_step"] == 12
    orphan = last.parent / ".last.ckpt.abc123.tmp"  # what a SIGKILL mid-write would leave
    orphan.write_bytes(b"half")
    monkeypatch.undo()
    run_fit(tmp_path / "run", resume=True)
    assert not orphan.exists()


def test_a_full_disk_while_checkpointing_is_one_clear_error_and_the_last_checkpoint_stays(tmp_path, monkeypatch):
    run_fit(tmp_path / "run")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    previous = last.read_bytes()

    def disk_full(tensors, path, metadata=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(selfsup.runs, "save_file", disk_full)
    with pytest.raises(SelfSupError, match=r"cannot write last.ckpt in .*checkpoints: the disk is full"):
        run_fit(tmp_path / "run", resume=True, epochs=EPOCHS + 1)
    assert last.read_bytes() == previous
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"]
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["status"] == "failed" and "disk is full" in record["reason"]


# --- run folders: one run at a time, never silently overwritten, weights checked on load ------------------------
def test_a_second_run_in_a_locked_folder_fails_fast_naming_the_holder(tmp_path):
    run = RunFolder(tmp_path / "run")
    with run.locked():
        import subprocess
        import sys
        code = ("import sys; from selfsup.runs import RunFolder\n"
                "try:\n    RunFolder(sys.argv[1]).locked().__enter__()\n"
                "except Exception as e:\n    print(e)")
        out = subprocess.run([sys.executable, "-c", code, str(run.path)], capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)), timeout=120).stdout
        assert f"in use by another selfsup run (PID {os.getpid()})" in out
        with run.locked():  # the holder itself may re-enter (the API locks, then the trainer)
            pass
    with run.locked():  # released when the holder is done
        pass


def test_a_finished_run_is_not_overwritten_without_overwrite(tmp_path, capsys):
    import numpy as np
    from selfsup.cli import main
    data = tmp_path / "tiny.npz"
    np.savez(data, images=DATA.images.numpy(), labels=DATA.labels.numpy())
    argv = ["pretrain", "rotation", "--data", str(data), "--epochs", "1", "--batch-size", "64", "--no-progress",
            "--run-dir", str(tmp_path / "run"), "--set", 'encoder_kwargs={"widths": [8, 8, 8]}',
            "--train-set", "knn_every=0"]
    assert main(argv) == 0
    weights = (tmp_path / "run" / "method.safetensors").read_bytes()
    capsys.readouterr()
    assert main(argv) == 2
    assert "already holds a run (status done)" in capsys.readouterr().err
    assert (tmp_path / "run" / "method.safetensors").read_bytes() == weights
    assert main(argv + ["--overwrite", "--seed", "1"]) == 0
    assert (tmp_path / "run" / "method.safetensors").read_bytes() != weights


def test_changed_or_non_finite_weights_are_refused_on_load(tmp_path):
    from dataclasses import asdict
    result = run_fit(tmp_path / "run")
    folder = RunFolder(tmp_path / "run")  # what the API adds to config.json (fit alone does not know the name)
    folder.write_config(folder.read_config() | {"method": "rotation", "method_config": asdict(result.method.config),
                                                "spec": asdict(DATA.spec)})
    selfsup.runs.load_run(folder.path)  # loads while the bytes match the recorded SHA-256
    weights = tmp_path / "run" / "method.safetensors"
    with pytest.raises(SelfSupError, match="SHA-256"):  # a flipped byte in a tensor evaluates at chance otherwise
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))
        selfsup.runs.load_run(tmp_path / "run")
    model = build_method("rotation", DATA.spec, **TINY)
    state = model.state_dict()
    next(v for v in state.values() if v.is_floating_point())[0] = float("nan")
    selfsup.runs.save_checkpoint({"state_dict": state}, tmp_path / "nan.safetensors")
    with pytest.raises(SelfSupError, match="non-finite weights"):
        selfsup.runs.load_weights(model, tmp_path / "nan.safetensors")
    renamed = {k + "_renamed": v for k, v in build_method("rotation", DATA.spec, **TINY).state_dict().items()}
    selfsup.runs.save_checkpoint({"state_dict": renamed}, tmp_path / "renamed.safetensors")
    with pytest.raises(SelfSupError, match="does not fit the method"):
        selfsup.runs.load_weights(model, tmp_path / "renamed.safetensors")


def test_every_atomic_write_goes_through_the_one_helper():
    """One implementation of write-fsync-rename (selfsup.utils.atomic_write): no module renames files itself."""
    from pathlib import Path
    src = Path(selfsup.runs.__file__).parent
    own = [f"{p.relative_to(src)}:{n}" for p in src.rglob("*.py") if p.name != "utils.py"
           for n, line in enumerate(p.read_text().splitlines(), 1)
           if any(word in line for word in ("os.replace(", "os.rename(", "mkstemp("))]
    assert own == []


def test_caches_are_written_atomically_with_fsync_and_a_refused_write_is_ignored(tmp_path, monkeypatch):
    import numpy as np
    import selfsup.utils
    from selfsup.data.photos import load_photos
    from selfsup.methods import jigsaw
    synced = []
    real_fsync = selfsup.utils.fsync_path
    monkeypatch.setattr(selfsup.utils, "fsync_path", lambda p: (synced.append(str(p)), real_fsync(p)))
    perms = jigsaw.permutation_set(10, seed=1, cache_dir=tmp_path / "jig")
    assert str(tmp_path / "jig") in synced  # the folder is synced after the rename
    assert len(synced) == 2  # ... and the temporary file before it
    # A disk that refuses the write (full): the permutations still come back, and no temporary file is left.
    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "replace", full)
    again = jigsaw.permutation_set(10, seed=1, cache_dir=tmp_path / "full")
    assert np.array_equal(again, perms) and list((tmp_path / "full").iterdir()) == []
    from PIL import Image
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "a.png")
    photos = load_photos([tmp_path / "a.png"], size=(8, 8), cache_dir=tmp_path / "photos")
    assert photos.shape == (1, 3, 8, 8) and list((tmp_path / "photos").iterdir()) == []


def test_a_checkpoint_carries_a_checksum_and_changed_bytes_or_metadata_are_refused(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file
    from selfsup.runs import CHECKSUM_KEY, STRUCTURE_KEY, save_checkpoint
    path = tmp_path / "last.ckpt"
    save_checkpoint({"state_dict": {"w": torch.arange(64.0)}, "global_step": 7}, path)
    assert load_checkpoint(path)["global_step"] == 7
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01  # one bit of the last tensor value
    path.write_bytes(bytes(raw))
    with pytest.raises(SelfSupError, match="does not match the SHA-256 it carries"):
        load_checkpoint(path)
    save_checkpoint({"state_dict": {"w": torch.arange(64.0)}, "global_step": 7}, path)
    with safe_open(str(path), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    edited = metadata[STRUCTURE_KEY].replace("7", "8")  # a hand-edited step count, the checksum left as it was
    assert edited != metadata[STRUCTURE_KEY]
    save_file(tensors, str(path), metadata={STRUCTURE_KEY: edited, CHECKSUM_KEY: metadata[CHECKSUM_KEY]})
    with pytest.raises(SelfSupError, match="does not match the SHA-256"):
        load_checkpoint(path)


def test_resume_does_not_trust_a_data_path_in_config_json(tmp_path, monkeypatch):
    """A tampered or stale config.json path is refused; the user names the data again with --data."""
    import numpy as np
    import selfsup.api as api
    monkeypatch.chdir(tmp_path)
    images = synthetic_images(n=160, classes=4)
    np.savez(tmp_path / "mine.npz", images=images.images.numpy(), labels=images.labels.numpy())
    np.savez(tmp_path / "other.npz", images=images.images.numpy()[::-1].copy())
    run = tmp_path / "run"
    api.pretrain("rotation", str(tmp_path / "mine.npz"), epochs=1, batch_size=64, run_dir=run, monitor=False,
                 options=TINY, train=QUIET)
    config = RunFolder(run).config
    record = json.loads(config.read_text())
    assert load_checkpoint(RunFolder(run).last_checkpoint)["selfsup_data"]["source"] == str(tmp_path / "mine.npz")
    config.write_text(json.dumps(dict(record, data=dict(record["data"], source=str(tmp_path / "other.npz")))))
    with pytest.raises(SelfSupError, match=r"names the data .*other.npz, but .* was started on .*mine.npz.*--data"):
        api.resume(run, epochs=2)
    config.write_text(json.dumps(record))
    (tmp_path / "moved").mkdir()
    os.rename(tmp_path / "mine.npz", tmp_path / "moved" / "mine.npz")
    with pytest.raises(SelfSupError, match=r"mine.npz, no longer exists .*--data PATH"):
        api.resume(run, epochs=2)
    with pytest.raises(SelfSupError, match="has changed since"):  # named again, but other items: fingerprints differ
        api.resume(run, epochs=2, data=str(tmp_path / "other.npz"))
    result = api.resume(run, epochs=2, data=str(tmp_path / "moved" / "mine.npz"))
    assert result.epochs == 2
    assert json.loads(config.read_text())["data"]["source"] == str(tmp_path / "moved" / "mine.npz")
