"""Run folders and checkpoints.

A run folder holds:
  config.json            the resolved configuration (method, method options, training, data)
  metrics.csv            every logged value (Lightning's CSV logger); tb/ holds TensorBoard events
  checkpoints/last.ckpt  the latest end-of-epoch training state, for `--resume`
  method.safetensors     the final weights of the whole method (encoder + heads)
  test_index.json        the held-out test set, when it was carved from the train part (never pretrained on)
  report.html, *.png     made by `selfsup report RUN`

Checkpoints are safetensors files: every tensor of the (nested) training state is stored as a tensor and
everything else (step counters, optimizer hyper-parameters, loop state) as JSON in the file's metadata.
Loading never unpickles anything. Files are written to a temporary name and renamed, so a crash leaves
the previous checkpoint intact. Each file carries the SHA-256 of its tensors and structure in its metadata,
checked on load: flipped bytes or a hand-edited header are refused, never trained on or evaluated. `load_run` rebuilds a run's method from its config.json and weights.
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import math
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.methods.base import Method, build_method
from selfsup.utils import atomic_write, atomic_write_text, hash_tensor

STRUCTURE_KEY = "selfsup_structure"
CHECKSUM_KEY = "selfsup_sha256"  # of the structure and every tensor (name, dtype, shape, bytes); see `content_sha256`


def content_sha256(structure: str, tensors: dict[str, torch.Tensor]) -> str:
    """What a checkpoint's checksum covers: its structure (JSON) and its tensors, in name order."""
    digest = hashlib.sha256(structure.encode())
    for name in sorted(tensors):
        digest.update(f"\0{name}".encode())
        hash_tensor(digest, tensors[name])
    return digest.hexdigest()


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON-able description of `obj`; tensors go into `tensors` and are referenced by name."""
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().cpu().contiguous().clone()  # clone: safetensors refuses shared storage
        return {"__tensor__": name}
    if isinstance(obj, dict):
        return {"__dict__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.dtype):
        return {"__dtype__": str(obj).removeprefix("torch.")}
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint (only tensors, numbers, strings, "
                    f"lists, tuples and dicts)")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        if "__float__" in obj:
            return float(obj["__float__"])
        if "__dtype__" in obj:
            return getattr(torch, obj["__dtype__"])
    return obj


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write a nested state (tensors, numbers, strings, lists, tuples, dicts) atomically as safetensors."""
    tensors: dict[str, torch.Tensor] = {}
    structure = json.dumps(_encode(state, tensors))
    metadata = {STRUCTURE_KEY: structure, CHECKSUM_KEY: content_sha256(structure, tensors)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint` (no unpickling)."""
    path = Path(path)
    if not path.exists():
        raise SelfSupError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise SelfSupError(f"checkpoint {path} is corrupt or not a selfsup checkpoint: {e}") from e
    if STRUCTURE_KEY not in metadata:
        raise SelfSupError(f"{path} is a safetensors file but not a selfsup checkpoint (no structure metadata)")
    recorded = metadata.get(CHECKSUM_KEY)  # files written before checksums were recorded have none
    if recorded is not None and content_sha256(metadata[STRUCTURE_KEY], tensors) != recorded:
        raise SelfSupError(f"checkpoint {path} does not match the SHA-256 it carries: its bytes changed since it was "
                           f"written (damaged or edited); use another checkpoint or pretrain again")
    try:
        return _decode(json.loads(metadata[STRUCTURE_KEY]), tensors)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise SelfSupError(f"checkpoint {path} has edited or damaged metadata ({type(e).__name__}: {e}); "
                           f"use another checkpoint or pretrain again") from e


def save_weights(module: torch.nn.Module, path: str | Path) -> str:
    """Write the module's weights; returns their file's SHA-256, which config.json records."""
    save_checkpoint({"state_dict": module.state_dict()}, path)
    return sha256_of(path)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_state(module: torch.nn.Module, state: Any, path: Path) -> None:
    """Load a state dict, refusing non-finite weights and a state that does not fit the module."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SelfSupError(f"{path} holds no state dict of tensors; it was edited or is not a selfsup file")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise SelfSupError(f"{path} holds non-finite weights ({bad[0]}{' and more' if len(bad) > 1 else ''}); "
                           f"the run diverged or the file was damaged: use an earlier checkpoint or pretrain again")
    try:
        module.load_state_dict(state)
    except RuntimeError as e:  # missing or renamed keys, wrong shapes, a wrong channel count
        if any(k.startswith("encoder.blocks.embed.token") for k in state):
            raise SelfSupError(f"{path} holds a text encoder of the hand-written Transformer that selfsup used before "
                               f"its Hugging Face BERT/GPT-2 encoders; its weights do not map onto them: pretrain "
                               f"the run again") from e
        raise SelfSupError(f"{path} does not fit the method config.json describes: "
                           f"{' '.join(str(e).split())[:500]}; it was edited or belongs to another run") from e


def load_weights(module: torch.nn.Module, path: str | Path) -> None:
    state = load_checkpoint(path)
    load_state(module, state.get("state_dict") if isinstance(state, dict) else None, Path(path))


class RunFolder:
    """Paths and small files of one run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.json")
    last_checkpoint = property(lambda self: self.path / "checkpoints" / "last.ckpt")
    weights = property(lambda self: self.path / "method.safetensors")
    metrics = property(lambda self: self.path / "metrics.csv")
    test_index = property(lambda self: self.path / "test_index.json")

    def write_config(self, config: dict) -> None:
        atomic_write_text(self.config, json.dumps(config, indent=2, sort_keys=True) + "\n")

    def read_config(self, *required: str) -> dict:
        """config.json as a dict holding the `required` keys; an edited or damaged file is a clear error."""
        if not self.config.exists():
            raise SelfSupError(f"{self.path} is not a run folder (no config.json); make one with `selfsup pretrain`")
        try:
            record = json.loads(self.config.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SelfSupError(f"{self.config} is not valid JSON ({e}); it was edited or damaged: restore it or "
                               f"pretrain again") from e
        missing = [key for key in required if not isinstance(record, dict) or key not in record]
        if missing:
            raise SelfSupError(f"{self.config} lacks {', '.join(missing)}; it was edited or damaged: restore it or "
                               f"pretrain again")
        for key in set(required) & {"method_config", "spec", "data", "train"}:
            if not isinstance(record[key], dict):
                raise SelfSupError(f"{self.config}: {key} must be a JSON object, not {record[key]!r}; it was edited: "
                                   f"restore it or pretrain again")
        return record

    def write_test_index(self, index: torch.Tensor, record: dict) -> None:
        """Store the held-out test positions (sorted) with their record, so evaluation finds the exact set."""
        sorted_index = torch.sort(index.long()).values.tolist()
        atomic_write_text(self.test_index, json.dumps(dict(record, index=sorted_index)) + "\n")

    def read_test_index(self) -> torch.Tensor:
        if not self.test_index.exists():
            raise SelfSupError(f"{self.path} records a carved test set but {self.test_index.name} is missing; "
                               f"the run's test set cannot be recovered, so pretrain again")
        return torch.tensor(json.loads(self.test_index.read_text())["index"], dtype=torch.long)

    def remove_orphaned_temporaries(self) -> list[Path]:
        """Delete the temporary files (`.NAME.*.tmp`) of atomic writes that a killed process left behind."""
        orphans = [p for folder in (self.path, self.last_checkpoint.parent) if folder.is_dir()
                   for p in folder.glob(".*.tmp")]
        for orphan in orphans:
            orphan.unlink(missing_ok=True)
        return orphans

    def read_metrics(self) -> list[dict]:
        if not self.metrics.exists():
            return []
        with open(self.metrics, newline="") as f:
            return list(csv.DictReader(f))

    def prepend_metrics(self, earlier: list[dict]) -> None:
        """Put the rows of earlier sessions of this run (before a resume) back in front of metrics.csv."""
        rows = earlier + self.read_metrics()
        fields = list(dict.fromkeys(key for row in rows for key in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.metrics, text.getvalue())

    lock_file = property(lambda self: self.path / "run.lock")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the folder: a second run started in it fails at once, naming the PID
        that holds it. The operating system drops the lock when the holder dies, so a stale lock never
        blocks a resume. Re-entrant in one process; other DDP ranks (LOCAL_RANK/NODE_RANK > 0) skip it."""
        key = str(self.path.resolve())
        if key in _HELD or not first_process():
            yield
            return
        created = [p for p in (self.path, *self.path.parents) if not p.exists()]  # the folders this makes
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise SelfSupError(f"cannot create the run folder {self.path}: {e.strerror}; choose another --run-dir") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise SelfSupError(f"{self.path} is in use by another selfsup run (PID {holder}); wait for it, stop it, "
                               f"or choose another --run-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            if created and [p.name for p in self.path.iterdir()] == [self.lock_file.name]:
                self.lock_file.unlink()  # nothing was written (bad data, say): leave no empty run folder
                for folder in created:
                    try:
                        folder.rmdir()
                    except OSError:  # another process put something there meanwhile
                        break
            os.close(fd)  # releases the lock

    def check_new(self, overwrite: bool) -> None:
        """A folder that holds a run is never silently reused: `overwrite` clears the run's files first."""
        if not self.config.exists() or not first_process():  # DDP ranks > 0 rerun the script: rank 0 checked
            return
        if not overwrite:
            status = self.read_config().get("status", "unknown")
            raise SelfSupError(f"{self.path} already holds a run (status {status}); continue it with --resume "
                               f"{self.path}, choose another --run-dir, or pass --overwrite to replace it")
        for name in RUN_FILES:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)

    def write_json(self, name: str, data: Any) -> Path:
        path = self.path / name
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
        return path


def first_process() -> bool:
    """False in the processes Lightning's DDP launcher starts for ranks > 0 (they rerun the user's script)."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


_HELD: set[str] = set()  # run folders whose lock this process holds
RUN_FILES = ("config.json", "metrics.csv", "checkpoints", "method.safetensors", "test_index.json", "tb",
             "tokenizer.json", "report.html", "hparams.yaml")


def recorded_spec(run: RunFolder, record: dict) -> DataSpec:
    try:
        return DataSpec(**record["spec"])
    except TypeError as e:
        raise SelfSupError(f"{run.config}: its spec {record['spec']!r} is not a data spec ({e}); it was edited: "
                           f"restore it or pretrain again") from e


def load_run(run_dir: str | Path) -> Method:
    """Rebuild a run's method and load its final weights (or its last checkpoint if it did not finish).

    Lives here, beside the files it reads, so that the API, the report and text generation all reload
    runs from below them (`selfsup.load_run` is this function).
    """
    run = RunFolder(run_dir)
    record = run.read_config("method", "method_config", "spec")
    method = build_method(record["method"], recorded_spec(run, record), **record["method_config"])
    if run.weights.exists():
        recorded = record.get("weights_sha256")
        if recorded is not None and sha256_of(run.weights) != recorded:
            raise SelfSupError(f"{run.weights} does not match the SHA-256 config.json records: its bytes changed "
                               f"since training (edited, damaged or replaced); restore it or pretrain again")
        load_weights(method, run.weights)
    elif run.last_checkpoint.exists():
        state = load_checkpoint(run.last_checkpoint).get("state_dict") or {}
        load_state(method, {k.removeprefix("method."): v for k, v in state.items()}, run.last_checkpoint)
    else:
        raise SelfSupError(f"{run.path} has no weights yet (no method.safetensors or checkpoints/last.ckpt)")
    method.eval()
    return method
