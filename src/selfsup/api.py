"""The Python API: pretrain a registered method on a named dataset, reload a run, evaluate it.

    import selfsup
    result = selfsup.pretrain("rotation", data="fashion-mnist", epochs=5)
    method = selfsup.load_run(result.run_dir)
    rows = selfsup.evaluate(method, data="fashion-mnist", labels_per_class=[10, 100])
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import torch

from selfsup.data.base import DataSpec, DatasetSplits
from selfsup.data.sources import load_dataset
from selfsup.data.splits import stratified_take
from selfsup.errors import SelfSupError
from selfsup.evaluate.budgets import PROTOCOLS, label_sweep, summarize
from selfsup.methods.base import METHODS, Method, build_method
from selfsup.runs import RunFolder, load_checkpoint, load_weights

if TYPE_CHECKING:  # the trainer (and Lightning) is imported only when training starts
    from selfsup.train import Monitor, PretrainResult


def random_subset(data: Any, size: int | None, seed: int) -> Any:
    if size is None or size >= len(data):
        return data
    return data.subset(torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:size])


def monitor_for(splits: DatasetSplits, seed: int, bank_size: int = 5000, query_size: int = 1000) -> Monitor | None:
    """A small labeled bank and query set for the online kNN monitor, when the source has labels."""
    from selfsup.train import Monitor
    train, test = splits.train, splits.test
    if getattr(train, "labels", None) is None:
        return None
    if test is None or test.labels is None:
        test = train  # no test split: monitor on other train items (monitoring only, never training)
    return Monitor(random_subset(train, bank_size, seed + 1), random_subset(test, query_size, seed + 2))


def run_tokenizer(run_dir: str | Path | None):
    """The tokenizer a text run was trained with (saved in its folder), or None."""
    if run_dir is None or not (Path(run_dir) / "tokenizer.json").exists():
        return None
    from selfsup.text.tokenizer import load_tokenizer
    return load_tokenizer(run_dir)


def run_data(name: str, run_dir: str | Path | None, modality: str, channels: int = 1) -> DatasetSplits:
    """Load dataset `name` the way run `run_dir` saw it (same tokenizer for text)."""
    return load_dataset(name, channels=channels, modality=modality, tokenizer=run_tokenizer(run_dir))


def default_run_dir(method: str) -> Path:
    return Path("runs") / f"{method}-{time.strftime('%Y%m%d-%H%M%S')}"


def pretrain(method: str, data: str | None = None, *, epochs: int | None = None, batch_size: int | None = None,
             seed: int = 0, pool_size: int | None = None, run_dir: str | Path | None = None,
             options: dict | None = None, train: dict | None = None, monitor: bool = True,
             pool: Any = None) -> PretrainResult:
    """Pretrain registered `method` on dataset `data` (its default when None) and write a run folder.

    `options` override the method's Config fields, `train` the TrainConfig fields. `pool` passes an
    explicit data object instead of a named dataset (the pool must match `data`'s kind).
    """
    import lightning as L
    from selfsup.train import TrainConfig
    from selfsup.train import pretrain as _fit
    cls = METHODS.get(method)
    data = data or cls.default_data
    splits = load_dataset(data, modality=cls.modality) if pool is None else DatasetSplits(pool, None)
    pool_data = random_subset(splits.train, pool_size, seed)
    cfg = TrainConfig(**{"epochs": epochs or cls.default_epochs, "batch_size": batch_size or cls.default_batch_size,
                         "seed": seed} | (train or {}))
    L.seed_everything(seed, verbose=False)
    m = build_method(method, pool_data.spec, **(options or {}))
    record = {"method": method, "method_config": asdict(m.config), "spec": asdict(pool_data.spec),
              "data": {"name": data, "pool_size": len(pool_data), "seed": seed, "explicit_pool": pool is not None}}
    run_dir = Path(run_dir) if run_dir else default_run_dir(method)
    return _fit(m, pool_data, cfg, run_dir, monitor_for(splits, seed) if monitor and pool is None else None,
                config_record=record)


def resume(run_dir: str | Path, epochs: int | None = None) -> PretrainResult:
    """Continue a run from its last checkpoint, up to `epochs` (default: the epochs it was started with)."""
    import lightning as L
    from selfsup.train import TrainConfig
    from selfsup.train import pretrain as _fit
    run = RunFolder(run_dir)
    record = run.read_config()
    method, data = record["method"], record["data"]
    if data.get("explicit_pool"):
        raise SelfSupError(f"{run.path} was trained on a pool passed from Python; resume it from Python with "
                           f"selfsup.train.pretrain(..., resume=True)")
    splits = run_data(data["name"], run.path, METHODS.get(method).modality)
    pool_data = random_subset(splits.train, data["pool_size"], data["seed"])
    cfg = TrainConfig(**(record["train"] | ({"epochs": epochs} if epochs else {})))
    L.seed_everything(cfg.seed, verbose=False)
    m = build_method(method, pool_data.spec, **record["method_config"])
    keep = {k: record[k] for k in ("method", "method_config", "spec", "data")}
    return _fit(m, pool_data, cfg, run.path, monitor_for(splits, cfg.seed), resume=True, config_record=keep)


def load_run(run_dir: str | Path) -> Method:
    """Rebuild a run's method and load its final weights (or its last checkpoint if it did not finish)."""
    run = RunFolder(run_dir)
    record = run.read_config()
    spec = DataSpec(**record["spec"])
    method = build_method(record["method"], spec, **record["method_config"])
    if run.weights.exists():
        load_weights(method, run.weights)
    elif run.last_checkpoint.exists():
        state = load_checkpoint(run.last_checkpoint)["state_dict"]
        method.load_state_dict({k.removeprefix("method."): v for k, v in state.items()})
    else:
        raise SelfSupError(f"{run.path} has no weights yet (no method.safetensors or checkpoints/last.ckpt)")
    method.eval()
    return method


def check_compatible(method: Method, spec: DataSpec) -> None:
    """Transfer needs the same modality and channel count; image size may differ for conv encoders."""
    if method.modality != spec.modality:
        raise SelfSupError(f"the encoder was trained on {method.modality} data but this data is {spec.modality}")
    if spec.modality == "image" and method.spec.channels != spec.channels and method.spec.channels == 1:
        raise SelfSupError(f"the encoder takes {method.spec.channels}-channel images, the data has {spec.channels}")


def evaluate(method: Method | str | Path, data: str = "fashion-mnist", *, protocols: Iterable[str] = PROTOCOLS,
             labels_per_class: Iterable[int] | None = (100,), label_fraction: float | None = None,
             seeds: Iterable[int] = (0,), upto: str | None = None, freeze_upto: str | None = None,
             finetune_kwargs: dict | None = None) -> dict:
    """Evaluate a method (or a run folder) on dataset `data` with the given protocols and label budgets.

    Labels are drawn, stratified and seeded, from `data`'s train part; accuracy is on its test part
    (carved, 100 per class, when the source has none). Another dataset than the pretraining one is transfer.
    """
    run_dir = None
    if not isinstance(method, Method):
        run_dir, method = method, load_run(method)
    splits = run_data(data, run_dir, method.modality, method.spec.channels)
    train, test = splits.train, splits.test
    if train.labels is None:
        raise SelfSupError(f"{data} has no labels: evaluation needs a labeled dataset")
    if test is None:
        test_index = stratified_take(train.labels, per_class=100, generator=torch.Generator().manual_seed(12345))
        rest = torch.ones(len(train), dtype=torch.bool)
        rest[test_index] = False
        train, test = train.subset(torch.nonzero(rest).flatten()), train.subset(test_index)
    check_compatible(method, train.spec)
    if label_fraction is not None:
        counts = torch.bincount(train.labels)
        labels_per_class = [max(1, int(label_fraction * counts.min().item()))]
    rows = label_sweep(method, train, test, labels_per_class, seeds, protocols, upto, freeze_upto, finetune_kwargs)
    return {"rows": rows, "summary": summarize(rows), "data": data, "test_size": len(test)}
