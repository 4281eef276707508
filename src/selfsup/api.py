"""The Python API: pretrain a registered method on a named dataset, reload a run, evaluate it.

    import selfsup
    result = selfsup.pretrain("rotation", data="fashion-mnist", epochs=5)
    method = selfsup.load_run(result.run_dir)
    rows = selfsup.evaluate(method, data="fashion-mnist", labels_per_class=[10, 100])

The held-out test set is fixed before anything is drawn: a source's own test split, or else a stratified
set carved from its train part by `held_out_test` (seeded). Pretraining pools, the online monitor and label
budgets come only from the rest; the run folder records the test set (config.json, test_index.json) and
evaluation on the run's own data uses exactly that set.
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import torch

from selfsup.config import check_budgets, check_count, make_config
from selfsup.data.base import DatasetSplits, DataSource, DataSpec
from selfsup.data.sources import load_dataset
from selfsup.data.splits import TEST_SEED, HeldOut, fingerprint, held_out_at, held_out_test, index_fingerprint
from selfsup.errors import SelfSupError
from selfsup.evaluate.budgets import PROTOCOLS, label_sweep, summarize
from selfsup.methods.base import METHODS, Method, build_method
from selfsup.runs import RunFolder, load_checkpoint, load_run, recorded_spec
from selfsup.utils import atomic_write

if TYPE_CHECKING:  # the trainer (and Lightning) is imported only when training starts
    from selfsup.train import Monitor, PretrainResult


def random_subset(data: DataSource, size: int | None, seed: int) -> DataSource:
    if size is None or size >= len(data):
        return data
    return data.subset(torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:size])


def monitor_for(rest: DataSource, seed: int, bank_size: int = 5000, query_size: int = 1000) -> Monitor | None:
    """A labeled bank and disjoint queries for the online kNN monitor, both from `rest` (the non-test part).

    The monitor is watched during pretraining and steers choices (how many epochs, which options): that
    is model selection, so it must not look at the held-out test set, which is touched once, for the
    reported number. Its queries are therefore other non-test items, never in the bank (an item that
    finds itself would inflate the accuracy). They may be in the unlabeled pool: their labels are read
    here only, never trained on.
    """
    from selfsup.train import Monitor
    if getattr(rest, "labels", None) is None or len(torch.unique(rest.labels)) < 2:
        return None  # no labels, or one class: a kNN accuracy would say nothing
    order = torch.randperm(len(rest), generator=torch.Generator().manual_seed(seed + 1))
    queries = order[:min(query_size, len(rest) // 5)]
    bank = order[len(queries):len(queries) + bank_size]
    if len(queries) == 0:
        return None
    return Monitor(rest.subset(bank), rest.subset(queries))


def heldout_documents(held: HeldOut | None) -> DataSource | None:
    """Documents for a language model's held-out curve (perplexity per epoch): the test split of an unlabeled
    corpus (e.g. gcide), which no accuracy is ever reported on. A labeled test set is touched once, for the
    reported number, so labeled data gives none (the training curve still shows the pretext accuracy)."""
    if held is None or held.test is None or getattr(held.test, "labels", None) is not None:
        return None
    return held.test


def run_tokenizer(run_dir: str | Path | None):
    """The tokenizer a text run was trained with (saved in its folder), or None."""
    if run_dir is None or not (Path(run_dir) / "tokenizer.json").exists():
        return None
    from selfsup.text.tokenizer import load_tokenizer
    return load_tokenizer(run_dir)


def run_data(name: str, run_dir: str | Path | None, modality: str, spec: DataSpec | None = None) -> DatasetSplits:
    """Load dataset `name` the way run `run_dir` saw it: the same tokenizer for text, and for a folder of
    images the image size and channels of the run's `spec` (not inferred again), for text its seq_len."""
    shape = {}
    if spec is not None and modality in ("image", "image-text"):
        shape = {"size": spec.height, "channels": spec.channels}
    elif spec is not None and modality == "text" and spec.seq_len:
        shape = {"seq_len": spec.seq_len}
    return load_dataset(name, modality=modality, tokenizer=run_tokenizer(run_dir), **shape)


SKIPPED_FILES = "skipped_files.txt"


def record_reading(run: RunFolder, splits: DatasetSplits) -> dict:
    """How the user's files were read, for config.json; unreadable files are listed in skipped_files.txt."""
    reading = splits.reading
    if reading is None:
        return {}
    if reading.skipped:
        text = "".join(line + "\n" for line in reading.skipped)
        atomic_write(run.path / SKIPPED_FILES, lambda tmp: Path(tmp).write_bytes(text.encode("utf-8", "backslashreplace")))
    record = reading.as_record() | {"summary": reading.summary}
    return {"read": record | ({"skipped_file": SKIPPED_FILES} if reading.skipped else {})}


def source_id(name: str) -> str:
    """What identifies a dataset across working directories: the absolute path of a file or folder, else
    the registered name. Evaluation compares it to decide whether it sees the run's pretraining data."""
    path = Path(name)
    return str(path.resolve()) if path.exists() else name


def test_record(held: HeldOut, train: DataSource) -> dict:
    """What config.json records of the held-out test set: rule, seed, size and fingerprints.

    `data_sha256` covers the whole train part that test indices point into; `test_sha256` the test items.
    """
    record = {"rule": held.rule, "seed": held.seed, "size": 0 if held.test is None else len(held.test),
              "data_sha256": fingerprint(train)}
    if held.test is not None:
        record["test_sha256"] = fingerprint(held.test)
    if held.test_index is not None:
        record |= {"index_file": "test_index.json", "index_sha256": index_fingerprint(held.test_index)}
    return record


def record_test_set(run: RunFolder, held: HeldOut, train: DataSource) -> dict:
    """Write test_index.json (when the test set was carved) and return the record for config.json."""
    record = test_record(held, train)
    if held.test_index is not None:
        run.write_test_index(held.test_index, record)
    return record


def data_changed(name: str, run: RunFolder) -> SelfSupError:
    return SelfSupError(
        f"{name} has changed since {run.path} was pretrained on it (its fingerprint differs), so the run's "
        f"recorded test set no longer names the same items and the pool may overlap it; evaluate on the data "
        f"the run saw, or pretrain again on the new data")


def recorded_test_set(run: RunFolder, data_record: dict, splits: DatasetSplits) -> HeldOut:
    """The held-out split that run `run` recorded, rebuilt from `splits` (its data, loaded again).

    The fingerprints must match: recorded indices name the same items only while the data is unchanged.
    """
    test = data_record["test"]
    if fingerprint(splits.train) != test["data_sha256"]:
        raise data_changed(data_record["name"], run)
    if "index_file" in test:
        index = run.read_test_index()
        if index_fingerprint(index) != test["index_sha256"]:
            raise SelfSupError(f"{run.test_index} does not match the test set config.json records; it was edited "
                               f"or replaced, so the run's test set is unknown: pretrain again")
        held = held_out_at(splits.train, index, test["rule"], test["seed"])
    else:
        held = held_out_test(splits, seed=test["seed"])  # the source's own test split, or no labels
    if held.rule != test["rule"] or (held.test is not None and fingerprint(held.test) != test.get("test_sha256")):
        raise data_changed(data_record["name"], run)
    return held


def default_run_dir(method: str) -> Path:
    return Path("runs") / f"{method}-{time.strftime('%Y%m%d-%H%M%S')}"


def pretrain(method: str, data: str | None = None, *, epochs: int | None = None, batch_size: int | None = None,
             seed: int = 0, pool_size: int | None = None, run_dir: str | Path | None = None,
             options: dict | None = None, train: dict | None = None, monitor: bool = True,
             pool: DataSource | None = None, test_seed: int = TEST_SEED, image_size: int | None = None,
             channels: int | None = None, seq_len: int | None = None, overwrite: bool = False,
             stream: bool | str = "auto") -> PretrainResult:
    """Pretrain registered `method` on dataset `data` (its default when None) and write a run folder.

    The pool (`pool_size` items drawn with `seed`, or all) comes from the data minus its held-out test
    set (`held_out_test` with `test_seed`), which the run folder records for `evaluate`. `options`
    override the method's Config fields, `train` the TrainConfig fields, both checked by
    `selfsup.config.make_config` as the CLI's `--set` and `--train-set` are. `pool` passes an explicit data
    object instead of a named dataset (it must match `data`'s kind; the caller then holds out the test set).
    `image_size` and `channels` read a folder of images at that size and colour (inferred when None; the
    run's config.json records what was chosen, and skipped_files.txt the files that could not be read).
    `seq_len` is the length of text documents in subwords (text methods; default 64).
    A folder that already holds a run is refused unless `overwrite`; the folder is locked while it trains.
    `stream` (a folder of images only): True decodes the folder once into a cache on disk and streams batches
    from it (`selfsup.data.stream`); "auto" does so when the decoded images would take more than
    `data.stream.STREAM_ABOVE_BYTES`; False reads the folder into memory. A streamed run pretrains on every
    image (no test set is held out of it: evaluate it on labeled images kept apart) and has no online monitor.
    """
    from selfsup.train import TrainConfig
    cls = METHODS.get(method)
    data = data or cls.default_data
    check_count("pool_size", pool_size, 1, allow_none=True)
    check_count("test_seed", test_seed, 0)
    # Every option is checked before any data is read: None means "the method's default", 0 is an error.
    cfg = make_config(TrainConfig, {"epochs": cls.default_epochs if epochs is None else epochs,
                                    "batch_size": cls.default_batch_size if batch_size is None else batch_size,
                                    "seed": seed} | (train or {}))
    make_config(cls.Config, options or {})
    run = RunFolder(run_dir or default_run_dir(method))
    streamed = pool is None and cls.modality == "image" and choose_stream(data, stream, image_size, channels)
    if streamed and pool_size is not None:
        raise SelfSupError("--pool-size draws a part of the data into memory; leave it out to stream the whole "
                           "folder, or leave out --stream")
    with run.locked():
        run.check_new(overwrite)
        if streamed:
            return _pretrain_streamed(cls, method, data, run, cfg, seed, options, image_size, channels)
        return _pretrain_locked(cls, method, data, run, cfg, seed, pool_size, options, monitor, pool, test_seed,
                                {"size": image_size, "channels": channels, "seq_len": seq_len})


def choose_stream(data: str, stream: bool | str, image_size: int | None, channels: int | None) -> bool:
    """Whether to stream `data` from a cache on disk: asked for (True), never (False), or "auto": when it is a
    folder whose decoded images would take more than `STREAM_ABOVE_BYTES` (it then says so)."""
    from selfsup.data import stream as streaming
    if stream not in (True, False, "auto"):
        raise SelfSupError(f"stream must be True, False or 'auto', got {stream!r}")
    if stream is False:
        return False
    if not Path(data).is_dir():
        if stream is True:
            raise SelfSupError(f"--stream reads a folder of images; {data} is not a folder: leave out --stream")
        return False
    if stream is True:
        return True
    plan = streaming.plan_folder(data, image_size, channels, warn=False)  # the reader that follows warns
    if plan.decoded_bytes <= streaming.STREAM_ABOVE_BYTES:
        return False
    warnings.warn(f"{data}: {len(plan.items)} images at {plan.size}x{plan.size}x{plan.channels} would take "
                  f"{plan.decoded_bytes / 2**30:.1f} GiB in memory, more than "
                  f"{streaming.STREAM_ABOVE_BYTES / 2**30:.0f} GiB: streaming them from a cache on disk", stacklevel=3)
    return True


STREAMED_TEST = ("none: a streamed run pretrains on every image of its folder; evaluate it with --data on labeled "
                 "images kept apart")


def _pretrain_streamed(cls: type[Method], method: str, data: str, run: RunFolder, cfg, seed: int,
                       options: dict | None, image_size: int | None, channels: int | None,
                       resume: bool = False) -> PretrainResult:
    import lightning as L
    from selfsup.data.stream import StreamedImages, build_cache
    from selfsup.train import pretrain as _fit
    pool_data = StreamedImages(build_cache(data, image_size, channels))
    L.seed_everything(seed, verbose=False)
    m = build_method(method, pool_data.spec, **(options or {}))
    meta = pool_data.meta
    read = {"size": [meta["size"]] * 2, "channels": meta["channels"], "size_rule": meta["size_rule"],
            "channels_rule": meta["channels_rule"], "images": len(pool_data), "skipped": len(meta["skipped"]),
            "summary": pool_data.describe()}
    if meta["skipped"]:
        text = "".join(line + "\n" for line in meta["skipped"])
        atomic_write(run.path / SKIPPED_FILES, lambda tmp: Path(tmp).write_bytes(text.encode("utf-8", "backslashreplace")))
        read["skipped_file"] = SKIPPED_FILES
    record = {"method": method, "method_config": asdict(m.config), "spec": asdict(pool_data.spec),
              "data": {"name": data, "source": source_id(data), "pool_size": len(pool_data), "seed": seed,
                       "explicit_pool": False, "stream": {"cache": str(pool_data.cache), "image_size": image_size,
                                                          "channels": channels},
                       "test": {"rule": STREAMED_TEST}, "read": read}}
    return _fit(m, pool_data, cfg, run.path, None, resume=resume, config_record=record)


def _pretrain_locked(cls: type[Method], method: str, data: str, run: RunFolder, cfg, seed: int,
                     pool_size: int | None, options: dict | None, monitor: bool, pool: DataSource | None,
                     test_seed: int, reading_options: dict) -> PretrainResult:
    import lightning as L
    from selfsup.train import pretrain as _fit
    if pool is None:
        splits = load_dataset(data, modality=cls.modality, **reading_options)
        held = held_out_test(splits, seed=test_seed)
        pool_data = random_subset(held.rest, pool_size, seed)
    else:
        held = None
        pool_data = random_subset(pool, pool_size, seed)
    L.seed_everything(seed, verbose=False)
    m = build_checked(method, pool_data.spec, options or {})  # before any file is written: no run folder is left
    if pool is None:
        test, reading = record_test_set(run, held, splits.train), record_reading(run, splits)
    else:
        test, reading = {"rule": "an explicit pool passed from Python: the caller holds the test set out"}, {}
    record = {"method": method, "method_config": asdict(m.config), "spec": asdict(pool_data.spec),
              "data": {"name": data, "source": source_id(data), "pool_size": len(pool_data), "seed": seed,
                       "explicit_pool": pool is not None, "test": test} | reading}
    return _fit(m, pool_data, cfg, run.path, monitor_for(held.rest, seed) if monitor and held is not None else None,
                config_record=record, heldout=heldout_documents(held))


def resume_data(run: RunFolder, data: dict, given: str | None) -> dict:
    """The data record a resume continues on, never a path taken blindly from config.json (which anyone may
    edit): the source must be the one the last checkpoint recorded when the run started, unless the user
    names the data again (`given`: a moved folder, say; its fingerprint is still checked against the run's)."""
    from selfsup.train import DATA_KEY
    if not run.last_checkpoint.exists():
        raise SelfSupError(f"nothing to resume in {run.path}: no checkpoints/last.ckpt")
    if not isinstance(data.get("name"), str) or not isinstance(data.get("source", ""), str):
        raise SelfSupError(f"{run.config}: data.name and data.source must be strings; it was edited: restore it or "
                           f"resume with --data PATH")
    if given is not None:
        return dict(data, name=given, source=source_id(given))
    started = load_checkpoint(run.last_checkpoint).get(DATA_KEY)  # checksummed, unlike config.json
    source = data.get("source", data["name"])
    if isinstance(started, dict) and started.get("source", started.get("name")) != source:
        raise SelfSupError(f"{run.config} names the data {source}, but {run.path} was started on "
                           f"{started.get('source', started.get('name'))} (config.json was edited, or the data "
                           f"moved); resume with --data PATH to say which data to continue on")
    if os.sep in source and not Path(source).exists():
        raise SelfSupError(f"the data {run.path} was trained on, {source}, no longer exists (moved or deleted); "
                           f"resume with --data PATH to give its new place")
    return data


def resume(run_dir: str | Path, epochs: int | None = None, data: str | None = None) -> PretrainResult:
    """Continue a run from its last checkpoint, up to `epochs` (default: the epochs it was started with).

    The data is the run's own, as its last checkpoint recorded it; `data` names it again (e.g. a moved
    folder) and must hold the same items (its fingerprint is checked)."""
    import lightning as L
    from selfsup.train import TrainConfig
    from selfsup.train import pretrain as _fit
    check_count("epochs", epochs, 1, allow_none=True)
    run = RunFolder(run_dir)
    record = run.read_config("method", "method_config", "spec", "data", "train")
    method, given = record["method"], data
    data = record["data"]
    if data.get("explicit_pool"):
        raise SelfSupError(f"{run.path} was trained on a pool passed from Python; resume it from Python with "
                           f"selfsup.train.pretrain(..., resume=True)")
    # The recorded options are checked as a user's would be, before any data is read (config.json may be edited).
    cfg = make_config(TrainConfig, record["train"] | ({"epochs": epochs} if epochs is not None else {}))
    make_config(METHODS.get(method).Config, record["method_config"])
    data = resume_data(run, data, given)
    if data.get("stream"):  # checked like any resume above: options, and the data the checkpoint recorded
        return _pretrain_streamed(METHODS.get(method), method, data.get("source", data["name"]), run, cfg,
                                  data["seed"], record["method_config"], data["stream"]["image_size"],
                                  data["stream"]["channels"], resume=True)
    splits = run_data(data.get("source", data["name"]), run.path, METHODS.get(method).modality,
                      recorded_spec(run, record))
    held = None
    if "test" in data:
        held = recorded_test_set(run, data, splits)
        rest = held.rest
    else:
        warnings.warn(f"{run.path} was started before held-out test sets were recorded: it continues on its old "
                      f"pool, which may contain the images evaluation tests on", stacklevel=2)
        rest = splits.train
    pool_data = random_subset(rest, data["pool_size"], data["seed"])  # the same draw as when the run started
    L.seed_everything(cfg.seed, verbose=False)
    m = build_method(method, pool_data.spec, **record["method_config"])
    keep = {k: record[k] for k in ("method", "method_config", "spec")} | {"data": data}
    return _fit(m, pool_data, cfg, run.path, monitor_for(rest, cfg.seed), resume=True, config_record=keep,
                heldout=heldout_documents(held))


def check_compatible(method: Method, spec: DataSpec) -> None:
    """Transfer needs the same modality and channel count; image size may differ for conv encoders. The image
    encoder of a language-image method (CLIP) transfers to images too."""
    if method.modality != spec.modality and (method.modality, spec.modality) != ("image-text", "image"):
        raise SelfSupError(f"the encoder was trained on {method.modality} data but this data is {spec.modality}; "
                           f"evaluate it on {method.modality} data (--data)")
    if spec.modality in ("image", "image-text") and method.spec.channels != spec.channels and method.spec.channels == 1:
        raise SelfSupError(f"the encoder takes {method.spec.channels}-channel images, the data has {spec.channels}; "
                           f"evaluate it on {method.spec.channels}-channel images")


def too_small(name: str, encoder: str, spec: DataSpec, error: RuntimeError) -> SelfSupError:
    return SelfSupError(f"the {encoder} encoder of {name} cannot take {spec.height}x{spec.width} images "
                        f"({' '.join(str(error).split())[:200]}); give larger images (resize them; a folder is "
                        f"resized with --image-size) or choose another encoder")


def build_checked(name: str, spec: DataSpec, options: dict) -> Method:
    """`build_method`, with images too small for the encoder (4x4 for a ConvNet with three poolings) as one
    clear error instead of a traceback from deep inside it (building runs the encoder once, for its size)."""
    try:
        method = build_method(name, spec, **options)
    except RuntimeError as e:
        if spec.modality != "image":
            raise
        raise too_small(name, options.get("encoder", METHODS.get(name).Config.encoder), spec, e) from e
    check_input_size(method, spec)
    return method


def check_input_size(method: Method, spec: DataSpec) -> None:
    """Run the encoder once on two blank images of `spec`'s size (eval mode, no gradient, the RNG untouched):
    images too small for it are one clear error, not a traceback from the first training or evaluation step."""
    if spec.modality != "image":
        return
    batch = torch.zeros(2, spec.channels, spec.height, spec.width, dtype=torch.uint8)
    was_training = method.training
    method.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            method.features(batch.to(next(method.parameters()).device))
    except RuntimeError as e:
        raise too_small(method.name, method.config.encoder, spec, e) from e
    finally:
        method.train(was_training)


def evaluation_split(splits: DatasetSplits, data: str, run: RunFolder | None) -> HeldOut:
    """The test set to evaluate on and the rest, from which label budgets are drawn.

    On the run's own pretraining data that is exactly the test set the run recorded (its pool never saw
    it). Elsewhere (transfer, an explicit-pool run, or a bare Method, which has no run folder) it is carved
    by `held_out_test` with the run's test seed or the default one, the same call `pretrain` makes.
    """
    recorded = run.read_config()["data"] if run is not None else {}
    same_data = bool(recorded) and source_id(data) == recorded.get("source", source_id(recorded["name"]))
    if same_data and recorded.get("stream"):
        warnings.warn(f"{run.path} streamed every image of {data}: a test set carved from it now overlaps what it "
                      f"was pretrained on; evaluate on labeled images kept apart (--data)", stacklevel=3)
    elif same_data and not recorded.get("explicit_pool"):
        if "test" in recorded:
            return recorded_test_set(run, recorded, splits)
        warnings.warn(f"{run.path} was pretrained before held-out test sets were recorded: its pool may contain "
                      f"the test images; pretrain again for a clean number", stacklevel=3)
    return held_out_test(splits, seed=recorded.get("test", {}).get("seed", TEST_SEED))


def own_data(run: RunFolder | None) -> str:
    """The data a run was pretrained on (what `evaluate` uses when no other is named)."""
    if run is None:
        raise SelfSupError("name the evaluation data (data=...): a method passed from Python has no run folder "
                           "that records its pretraining data")
    recorded = run.read_config()["data"]
    if recorded.get("explicit_pool"):
        raise SelfSupError(f"{run.path} was pretrained on a pool passed from Python; name the evaluation data "
                           f"with --data")
    return recorded.get("source", recorded["name"])


def modality_protocols(modality: str, protocols: Iterable[str] | None) -> list[str]:
    """The protocols asked for (default: all of the modality's), checked against the modality's list."""
    from selfsup.evaluate.text import TEXT_PROTOCOLS
    known = list(TEXT_PROTOCOLS if modality == "text" else PROTOCOLS)
    protocols = list(protocols) if protocols else known
    wrong = [p for p in protocols if p not in known]
    if wrong:
        raise SelfSupError(f"protocol(s) {', '.join(wrong)} do not apply to {modality} data; its protocols are "
                           f"{', '.join(known)}")
    return protocols


def supervised_row(method: Method) -> str:
    """Which encoder the supervised baseline trains, in words, for the printed table."""
    name = "scratch" if method.modality == "text" else "supervised"
    return (f"{name}: the {method.config.encoder} encoder ({sum(p.numel() for p in method.encoder.parameters()):,} "
            f"parameters) trained from random init on the same labels")


FEATURES_FOLDER = "features"  # RUN/features/: frozen features kept by evaluate and report (evaluate.features)


def default_out(run: RunFolder | None, settings: dict) -> Path | None:
    """Where a run's evaluation is written when no --out is given: RUN/evaluations/DATA-SETTINGS.json."""
    if run is None:
        return None
    from selfsup.evaluate.log import settings_key
    return run.path / "evaluations" / f"{Path(str(settings['data'])).stem}-{settings_key(settings)}.json"


def protocol_settings(method: Method, finetune_kwargs: dict) -> dict:
    """What the protocols themselves do beyond the arguments (the tuning grids, a standardised fine-tuning head),
    recorded with an evaluation's settings so a log written under other protocols is not resumed as if it were
    this one."""
    from selfsup.evaluate.finetune import finetune_head
    from selfsup.evaluate.tuning import GRIDS
    settings: dict = {"grids": GRIDS}
    if method.modality == "image":
        settings["finetune_head"] = finetune_head(method.encoder, finetune_kwargs)
    return settings


def check_folds(folds: int, modality: str, budgets: list[int | None]) -> None:
    """k-fold tuning is built for image evaluation, and needs `folds` labeled items of every class."""
    if folds == 1:
        return
    if modality != "image":
        raise SelfSupError(f"folds={folds}: k-fold tuning is built for image evaluation; {modality} evaluation tunes on "
                           f"one validation split (use folds=1)")
    smallest = min((b for b in budgets if b is not None), default=None)
    if smallest is not None and smallest < folds:
        raise SelfSupError(f"folds={folds} needs at least {folds} labels per class, but a budget has {smallest} "
                           f"(use --folds {smallest} or fewer)")


def evaluate(method: Method | str | Path, data: str | None = None, *, protocols: Iterable[str] | None = None,
             labels_per_class: Iterable[int] | None = (100,), label_fraction: float | None = None,
             seeds: Iterable[int] = (0,), upto: str | None = None, freeze_upto: str | None = None,
             finetune_kwargs: dict | None = None, out: str | Path | None = None,
             progress: Callable[[str], None] | None = None, cache_features: bool = True, folds: int = 1) -> dict:
    """Evaluate a method (or a run folder) on dataset `data` with the given protocols and label budgets.

    `data` None is the run's own pretraining data (images or text). Labels are drawn, stratified and
    seeded, from `data`'s train part minus the held-out test set; accuracy is on that test set (see
    `evaluation_split`). Another dataset than the pretraining one is transfer. Protocols default to every
    protocol of the modality (`PROTOCOLS` for images; `evaluate.text.TEXT_PROTOCOLS` for text, with the
    bag-of-words baseline "bow").

    Every finished draw (budget, seed) is written to `out` (default RUN/evaluations/...json for a run
    folder), and a second call with the same settings resumes from the rows written there. `progress`
    receives one line per draw started and finished. The frozen features of the label pool and the test
    set are computed once for all protocols, budgets and seeds, and kept in RUN/features/ (unless
    `cache_features` is False) for later evaluations and the report.

    Hyperparameters are chosen on one validation split of each budget (20% of it); `folds` > 1 chooses them
    by stratified k-fold cross-validation instead, at `folds` times the tuning cost: steadier at a few labels
    per class, where one split holds only 2 items per class (images only).
    """
    check_budgets(labels_per_class, label_fraction, seeds)
    check_count("folds", folds, 1)
    run_dir = None
    if not isinstance(method, Method):
        run_dir, method = method, load_run(method)
    run = RunFolder(run_dir) if run_dir is not None else None
    data = data or own_data(run)
    protocols = modality_protocols(method.modality, protocols)
    splits = run_data(data, run_dir, method.modality, method.spec)
    if getattr(splits.train, "labels", None) is None:
        raise SelfSupError(f"{data} has no labels: evaluation needs a labeled dataset (for a folder of images: one "
                           f"subfolder per class)")
    if len(torch.unique(splits.train.labels)) < 2:
        raise SelfSupError(f"{data} has a single class ({', '.join(splits.train.classes) or 'one label'}): "
                           f"evaluation needs at least two (for a folder of images: one subfolder per class)")
    held = evaluation_split(splits, data, run)
    train, test = held.rest, held.test
    check_compatible(method, train.spec)
    check_input_size(method, train.spec)
    if label_fraction is not None:
        counts = torch.bincount(train.labels)
        labels_per_class = [max(1, int(label_fraction * counts.min().item()))]
    budgets, seeds = list(labels_per_class), list(seeds)
    check_folds(folds, method.modality, budgets)
    settings = {"run": str(run_dir) if run_dir is not None else None, "data": data, "protocols": protocols,
                "labels_per_class": budgets, "seeds": seeds, "upto": upto, "freeze_upto": freeze_upto,
                "finetune_kwargs": finetune_kwargs or {}} | protocol_settings(method, finetune_kwargs or {})
    if folds > 1:  # only then, so evaluations logged before `folds` existed still resume
        settings["folds"] = folds
    from selfsup.evaluate.log import EvaluationLog
    log = EvaluationLog(out if out is not None else default_out(run, settings), settings)
    recorded = run.read_config()["data"] if run is not None else {}
    own = source_id(data) == recorded.get("source") and not recorded.get("explicit_pool")
    about = {"data": data, "own_data": own,
             "test_size": len(test), "test_rule": held.rule, "test_seed": held.seed,
             "supervised": supervised_row(method), "out": None if log.path is None else str(log.path),
             "resumed_rows": log.resumed}
    say = progress or (lambda line: None)
    total = len(budgets) * len(seeds)

    def on_draw(budget, seed, rows) -> None:
        where = f"[{budget if budget is not None else 'all'} labels/class, seed {seed}]"
        if rows is None:
            finished = len({(r["labels_per_class"], r["seed"]) for r in log.rows})
            say(f"{where} running {', '.join(protocols)} (draw {finished + 1} of {total})")
            return
        log.add(rows)
        say(f"{where} " + ", ".join(f"{r['protocol']} {100 * r['acc']:.2f}%" for r in rows))

    from selfsup.evaluate.features import FeatureCache
    cache = FeatureCache(run.path / FEATURES_FOLDER if run is not None and cache_features else None)
    if method.modality == "text":
        from selfsup.evaluate.text import text_label_sweep
        rows = text_label_sweep(method, train, test, budgets, seeds, protocols=protocols,
                                finetune_kwargs=finetune_kwargs, done=log.done, on_draw=on_draw, cache=cache)
    else:
        rows = label_sweep(method, train, test, budgets, seeds, protocols, upto, freeze_upto, finetune_kwargs,
                           done=log.done, on_draw=on_draw, cache=cache, folds=folds)
    about["feature_cache"] = {"hits": cache.hits, "misses": cache.misses}
    result = {"rows": rows, "summary": summarize(rows)} | about
    from selfsup.evaluate.zero_shot import is_language_image, language_image_evaluation
    if is_language_image(method) and getattr(test, "captions", None) is not None:
        say("zero-shot classification and retrieval on the held-out pairs")
        result["language_image"] = language_image_evaluation(method, test)
    log.finish(result)
    return result
