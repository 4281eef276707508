"""Pretraining through PyTorch Lightning: the one module that knows about Lightning.

Data stays in memory as uint8 tensors; each process draws seeded index batches from its shard of a
per-epoch permutation, and the method augments the whole batch on the device. Optimisation is manual
(one optimizer, or one per phase for adversarial methods) so that the learning-rate schedule, the NaN
guard and `after_step` live in one readable `training_step`. Each epoch reseeds the global RNG from
(seed, epoch, rank), so a run resumed from an end-of-epoch checkpoint repeats an uninterrupted run.

Checkpoints (`checkpoints/last.ckpt`) are written at every epoch end, every `checkpoint_every_steps` steps
or `checkpoint_every_minutes` minutes, and at the current step when SIGTERM or SIGINT arrives; the run then
stops with `RunInterrupted` (exit code 128 + signal). A checkpoint taken mid-epoch stores the position in
the epoch's permutation and the RNG state, so a resume from it finishes bit-identical to a run that was
never stopped. config.json's status reads running, done, interrupted or failed (with the reason).
Under DDP the signal handlers are taken back from Lightning at train start, so a SIGTERM to rank 0 alone
stops every process at the same step, after rank 0 has written the checkpoint. A checkpoint also records
the data the run started on, which a resume trusts over config.json.
"""
from __future__ import annotations

import math
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from selfsup.data.base import Batch, DataSource, ImageData
from selfsup.errors import RunInterrupted, SelfSupError
from selfsup.evaluate.features import extract_features
from selfsup.evaluate.knn import knn_classify
from selfsup.evaluate.linear import linear_probe
from selfsup.evaluate.text import heldout_lm_metrics
from selfsup.methods.base import Method, MethodConfig
from selfsup.nets.base import choose_memory_layout
from selfsup.runs import RunFolder, load_checkpoint, save_checkpoint, save_weights


@dataclass
class TrainConfig:
    """How to train (the method's own options live in its Config)."""

    epochs: int = 10
    batch_size: int = 256  # per process; the global batch is batch_size x processes
    seed: int = 0
    accelerator: str = "auto"  # cpu | gpu | auto
    devices: int | str = 1  # processes per node; >1 uses DDP
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | ddp_spawn ...
    precision: str = "32-true"  # e.g. bf16-mixed on GPUs (losses that need it stay fp32: selfsup.losses.precision)
    compile: bool = False  # torch.compile the encoder; falls back to eager (with a warning) where it fails
    knn_every: int = 1  # online kNN monitor every N epochs (0: off)
    progress_bar: bool = True
    log_every_n_steps: int = 10
    checkpoint_every_steps: int = 0  # also save last.ckpt every N optimizer steps (0: only by time and at epoch end)
    checkpoint_every_minutes: float = 10.0  # and at least this often (0: off); a signal saves at once anyway
    stream_workers: int = 0  # processes that read a stream cache (data.stream); 0: the training process reads it


@dataclass
class Monitor:
    """Labeled data for online monitoring only (kNN and linear-probe accuracy, collapse); never used to
    train the method: the probes read detached features, so no gradient reaches the encoder."""

    bank: DataSource
    queries: DataSource
    k: int = 200
    probe_epochs: int = 30  # the online linear probe's passes over the bank (a few hundred Adam steps)


@dataclass
class PretrainResult:
    run_dir: Path
    method: Method
    epochs: int
    seconds: float
    images_per_s: float
    final: dict[str, float] = field(default_factory=dict)
    is_global_zero: bool = True  # False in the other processes of a multi-process run


class SafetensorsCheckpointIO(CheckpointIO):
    """Lightning checkpoints as safetensors + JSON metadata: atomic, and no unpickling on load."""

    def save_checkpoint(self, checkpoint: dict, path: str | Path, storage_options: Any = None) -> None:
        save_checkpoint(checkpoint, path)

    def load_checkpoint(self, path: str | Path, map_location: Any = None, **kwargs: Any) -> dict:
        return load_checkpoint(path)

    def remove_checkpoint(self, path: str | Path) -> None:
        Path(path).unlink(missing_ok=True)


class InMemoryBatches:
    """Index batches over an in-memory data object: a seeded permutation per epoch, sharded by rank.

    Yields `data.batch(index)` on the CPU; Lightning moves it to the device. The ragged last batch is
    dropped so every step sees the same batch size (BatchNorm, contrastive negatives). Its state (how many
    batches of the epoch are done) travels in checkpoints, so a mid-epoch resume continues at that batch. On a
    GPU the whole uint8 dataset moves there once when it fits (`resident_copy`), so a batch is cut where it is
    used; otherwise each batch is pinned, so that Lightning's non-blocking copy overlaps the previous step.
    """

    def __init__(self, data: DataSource, batch_size: int, seed: int, module: "PretrainModule"):
        self.data, self.batch_size, self.seed, self.module = data, batch_size, seed, module
        self._resident: ImageData | None = None  # the dataset's copy on the GPU, made at the first epoch there
        self._skip = 0  # batches of the current epoch already trained before a mid-epoch resume

    def state_dict(self) -> dict:
        return {"batches_done": self.module.batches_done}

    def load_state_dict(self, state: dict) -> None:
        done = state.get("batches_done", 0)
        self._skip = done if done < len(self) else 0  # an epoch-end checkpoint starts the next epoch afresh

    def _world(self) -> tuple[int, int]:
        trainer = self.module._trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def __len__(self) -> int:
        return (len(self.data) // self._world()[1]) // self.batch_size

    def __iter__(self) -> Iterator[Batch]:
        rank, world = self._world()
        epoch = self.module.current_epoch
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.data), generator=g)
        shard = order[: (len(order) // world) * world][rank::world]
        start, self._skip = self._skip, 0
        data, shard, pin = self._source(shard)
        for i in range(start, len(shard) // self.batch_size):
            batch = data.batch(shard[i * self.batch_size:(i + 1) * self.batch_size])
            yield batch.pin_memory() if pin and isinstance(batch, torch.Tensor) else batch

    def _source(self, shard: torch.Tensor) -> tuple[DataSource, torch.Tensor, bool]:
        """Where batches are cut, the shard's indices there, and whether to pin each batch (see above)."""
        device = self.module.device
        if device.type != "cuda":
            return self.data, shard, False
        if self._resident is None:
            self._resident = resident_copy(self.data, device, torch.cuda.mem_get_info(device)[0])
        if self._resident is None:
            return self.data, shard, True
        return self._resident, shard.to(device), False


class StreamedBatches(InMemoryBatches):
    """Batches streamed from a stream cache on disk (`data.stream`): the same contract as `InMemoryBatches`
    (uint8 batches on the CPU, ragged rest dropped, a mid-epoch resume continues at its batch), but the order
    is LitData's, seeded by (seed, epoch), and under DDP LitData hands each rank its own chunks. Memory holds
    the chunks being read, never the dataset."""

    def __init__(self, data, batch_size: int, seed: int, module: "PretrainModule", workers: int = 0):
        super().__init__(data, batch_size, seed, module)
        self.workers = workers

    def __iter__(self) -> Iterator[Batch]:
        from selfsup.data.stream import stream_batches
        start, self._skip = self._skip, 0
        pin = self.module.device.type == "cuda"
        for batch in stream_batches(self.data, self.batch_size, self.seed, self.module.current_epoch,
                                    workers=self.workers, skip=start):
            yield batch.pin_memory() if pin else batch


def batches_for(data: DataSource, batch_size: int, seed: int, module: "PretrainModule", workers: int = 0) -> InMemoryBatches:
    """The one place that picks how batches are fed: streamed from a cache on disk, or cut from memory."""
    from selfsup.data.stream import StreamedImages
    if isinstance(data, StreamedImages):
        return StreamedBatches(data, batch_size, seed, module, workers)
    return InMemoryBatches(data, batch_size, seed, module)


def resident_copy(data: DataSource, device: torch.device, free_bytes: int) -> ImageData | None:
    """The uint8 images (no labels: pretraining never reads them) copied to `device` when they take at
    most a quarter of its `free_bytes`, leaving the rest to the model; None when they do not fit or are
    not plain in-memory images."""
    if not isinstance(data, ImageData):
        return None
    if data.images.numel() * data.images.element_size() > free_bytes // 4:
        return None
    return ImageData(data.images.to(device, non_blocking=True), name=data.name)


def make_optimizer(params: list[torch.nn.Parameter], cfg: MethodConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise SelfSupError(f"unknown optimizer {cfg.optimizer!r}: use adam, adamw or sgd")


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Linear warm-up over `warmup` steps, then constant or cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    raise SelfSupError(f"unknown schedule {schedule!r}: use cosine or constant")


def train_steps(method: Method, data: DataSource, steps: int, batch_size: int, seed: int = 0) -> dict[str, float]:
    """`steps` optimizer steps on seeded random batches, with the trainer's optimizer and LR schedule but
    without Lightning: for benchmarks that budget steps rather than epochs. Leaves the method in eval mode.
    Returns the seconds taken, the final loss and the last step's metrics."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = make_optimizer(method.trainable_parameters(), method.config)
    base = [group["lr"] for group in opt.param_groups]
    method.train()
    start, metrics = time.perf_counter(), {}
    for step in range(steps):
        for group, lr in zip(opt.param_groups, base):
            group["lr"] = lr * lr_factor(step, steps, 0, method.config.schedule)
        loss, metrics = method.loss(data.batch(torch.randint(len(data), (batch_size,), generator=g)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.after_step((step + 1) / steps)
    method.eval()
    return {"seconds": time.perf_counter() - start, "final_loss": loss.item(),
            **{k: float(v) for k, v in metrics.items()}}


def embedding_spread(features: torch.Tensor) -> float:
    """Per-dimension std of L2-normalised embeddings, times sqrt(D): about 1 when spread, -> 0 at collapse."""
    z = torch.nn.functional.normalize(features.float(), dim=1)
    return (z.std(0).mean() * math.sqrt(z.shape[1])).item()


def looks_collapsed(spread: float, knn_acc: float, num_classes: int) -> bool:
    """Warn of collapse only when the embeddings are bunched *and* the kNN monitor is near chance.

    A low spread alone is no sign: features after a ReLU (rotation, jigsaw) all lie in one orthant, so their
    normalised spread is small while they classify well (a rotation run at 81% kNN had spread < 0.1).
    """
    return spread < 0.1 and knn_acc <= 2.0 / max(num_classes, 2)


class EpochLines(Callback):
    """One line per epoch on stderr, instead of a progress bar redrawn every step, when stderr is not a
    terminal (a log file, CI): the epoch, its loss, the monitor's accuracy and the items per second."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        m = trainer.callback_metrics  # this epoch's monitor values are logged after callbacks run: last check's
        shown = [f"{k.split('/', 1)[1]} {float(m[k]):.4g}" for k in ("train/loss_epoch", "monitor/knn_acc") if k in m]
        seconds = time.perf_counter() - pl_module._epoch_start
        shown.append(f"{pl_module._epoch_items * trainer.world_size / max(seconds, 1e-9):,.0f} items/s")
        print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {', '.join(shown)}", file=sys.stderr, flush=True)


class PretrainModule(L.LightningModule):
    def __init__(self, method: Method, cfg: TrainConfig, steps_per_epoch: int, monitor: Monitor | None,
                 heldout: DataSource | None = None):
        super().__init__()
        self.method, self.cfg, self.monitor = method, cfg, monitor
        self.heldout = heldout if hasattr(method, "heldout_stats") else None
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * cfg.epochs
        self.automatic_optimization = False  # we step per phase and control the schedule ourselves
        self.phases = method.phases or ("main",)
        self.batches_done = 0  # in the current epoch
        self._resume_rng: torch.Tensor | None = None  # the RNG state of a mid-epoch checkpoint, set on load
        self._epoch_start, self._epoch_items = time.perf_counter(), 0

    def on_fit_start(self) -> None:
        choose_memory_layout(self.method, self.device.type)
        if self.cfg.compile:
            compile_encoder(self.method)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        mcfg = self.method.config
        if self.method.phases is None:
            return [make_optimizer(self.method.trainable_parameters(), mcfg)]
        return [make_optimizer(list(self.method.phase_parameters(p)), mcfg) for p in self.phases]

    def on_train_epoch_start(self) -> None:  # not called when a run resumes in the middle of an epoch
        torch.manual_seed(self.cfg.seed * 1_000_003 + self.current_epoch * 101 + self.global_rank)
        self._epoch_start, self._epoch_items, self.batches_done = time.perf_counter(), 0, 0

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # where in the epoch the run is, and the RNG state the next step's views draw from
        checkpoint["selfsup_position"] = {"batches_done": self.batches_done, "rng": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        position = checkpoint.get("selfsup_position", {})
        if 0 < position.get("batches_done", 0) < self.steps_per_epoch:
            self.batches_done, self._resume_rng = position["batches_done"], position["rng"]

    @property
    def step_in_run(self) -> int:
        return self.current_epoch * self.steps_per_epoch + self.batches_done

    def on_train_start(self) -> None:
        if self._resume_rng is not None:  # mid-epoch: go on drawing exactly where the stopped run was
            torch.set_rng_state(self._resume_rng)
            self._resume_rng = None

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        step = self.current_epoch * self.steps_per_epoch + batch_idx
        mcfg = self.method.config
        factor = lr_factor(step, self.total_steps, round(mcfg.warmup_epochs * self.steps_per_epoch), mcfg.schedule)
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        for phase, opt in zip(self.phases, optimizers):
            for group in opt.param_groups:
                group["lr"] = group.setdefault("base_lr", group["lr"]) * factor
            if self.method.phases is None:
                loss, metrics = self.method.loss(batch)
            else:
                loss, metrics = self.method.phase_loss(batch, phase)
            self._stop_if_not_finite(loss, phase, step)
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt.step()
            prefix = "train/" if self.method.phases is None else f"train/{phase}/"
            self.log(f"{prefix}loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=True)
            for name, value in metrics.items():
                self.log(f"{prefix}{name}", value, on_step=False, on_epoch=True, sync_dist=True)
        self.log("train/lr", mcfg.lr * factor, on_step=True, on_epoch=False)
        self.method.after_step((step + 1) / self.total_steps)
        self._epoch_items += _batch_len(batch)
        self.batches_done += 1

    def _stop_if_not_finite(self, loss: torch.Tensor, phase: str, step: int) -> None:
        if not torch.isfinite(loss):
            last = Path(self.trainer.default_root_dir) / "checkpoints" / "last.ckpt"
            kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
            raise SelfSupError(
                f"loss became {loss.item()} at epoch {self.current_epoch}, step {step}"
                f"{'' if phase == 'main' else f' ({phase} phase)'}; training stopped and {kept}. "
                f"Lower the learning rate (--lr) and resume with `selfsup pretrain --resume RUN`.")

    def on_train_epoch_end(self) -> None:
        seconds = time.perf_counter() - self._epoch_start
        self.log("train/images_per_s", self._epoch_items * self.trainer.world_size / max(seconds, 1e-9), sync_dist=True)
        if self.heldout is not None:  # a language model's held-out curve: the same documents every epoch
            for name, value in heldout_lm_metrics(self.method, self.heldout, seed=self.cfg.seed).items():
                self.log(f"heldout/{name}", value, prog_bar=name == "perplexity", sync_dist=True)
        every = self.cfg.knn_every
        if self.monitor is not None and every and (self.current_epoch + 1) % every == 0:
            bank = extract_features(self.method, self.monitor.bank)
            queries = extract_features(self.method, self.monitor.queries)
            acc = knn_classify(bank, self.monitor.bank.labels, queries, self.monitor.queries.labels,
                               k=self.monitor.k)["acc"]
            # A linear head refitted at each check on the bank's detached features (as solo-learn's and
            # lightly's online classifiers, but stateless, so a resumed run logs what an uninterrupted one does).
            linear = linear_probe(bank, self.monitor.bank.labels, queries, self.monitor.queries.labels,
                                  epochs=self.monitor.probe_epochs, seed=self.cfg.seed)["acc"]
            spread = embedding_spread(queries)
            self.log("monitor/knn_acc", acc, prog_bar=True, sync_dist=True)
            self.log("monitor/linear_acc", linear, prog_bar=True, sync_dist=True)
            self.log("monitor/embedding_spread", spread, sync_dist=True)
            if looks_collapsed(spread, acc, len(self.monitor.bank.classes) or int(self.monitor.bank.labels.max()) + 1):
                warnings.warn(f"embeddings may be collapsing: spread {spread:.3f} (1 = well spread, 0 = collapsed) "
                              f"and the monitor's kNN accuracy {acc:.3f} is near chance", stacklevel=1)


def compile_encoder(method: Method) -> bool:
    """`torch.compile` the method's encoder in place (its state dict keeps its keys), and let a frame that
    fails to compile run eagerly; where compilation is not available at all, warn once and train eagerly.
    Only the encoder: the bulk of the work, and the one net every method has. True when compiled."""
    try:
        import torch._dynamo
        torch._dynamo.config.suppress_errors = True  # a graph that fails to compile falls back to eager
        method.encoder.compile()
    except Exception as e:  # noqa: BLE001 - any failure here means: train without compiling
        warnings.warn(f"torch.compile failed ({type(e).__name__}: {e}); training the encoder eagerly", stacklevel=2)
        return False
    return True


def _batch_len(batch: Batch) -> int:
    if isinstance(batch, dict):
        return len(next(iter(batch.values())))
    return len(batch[0]) if isinstance(batch, (list, tuple)) else len(batch)


class StopSignals:
    """SIGTERM and SIGINT set a flag instead of killing the process: the `Checkpoints` callback then saves
    at the current step and stops the run. A second signal of the same kind stops at once."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # asked twice: the user does not want to wait for the checkpoint
            raise KeyboardInterrupt
        self.signum = signum

    def take_over(self) -> None:
        """Handle the signals ourselves again, once Lightning has put its own SIGTERM handler first (at fit
        start). Its handler kills the other DDP processes and stops at the next step without a checkpoint;
        ours lets every process agree on the step, save there, and stop together."""
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                signal.signal(s, self._handle)

    @contextmanager
    def installed(self) -> Iterator["StopSignals"]:
        if threading.current_thread() is not threading.main_thread():  # handlers live in the main thread only
            yield self
            return
        previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


DATA_KEY = "selfsup_data"  # in last.ckpt: the data the run started on (name, resolved source)


def checkpoint_data_record(record: dict) -> dict | None:
    """The part of config.json's data record that a checkpoint keeps (a resume trusts it over config.json)."""
    data = record.get("data")
    if not isinstance(data, dict) or "name" not in data:
        return None
    return {key: data[key] for key in ("name", "source") if key in data}


class Checkpoints(Callback):
    """Write `last.ckpt` (atomically, through the trainer's checkpoint IO, full state: optimizer and loops
    too) at every epoch end, every `every_steps` steps or `every_minutes` minutes, and on a stop signal."""

    def __init__(self, path: Path, every_steps: int, every_minutes: float, signals: StopSignals,
                 data_record: dict | None = None):
        self.path, self.every_steps, self.every_minutes, self.signals = path, every_steps, every_minutes, signals
        self.data_record = data_record  # what the run trains on; a resume checks config.json against it
        self.last_save = time.monotonic()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.signals.take_over()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:  # noqa: ANN001
        if self.data_record is not None:
            checkpoint[DATA_KEY] = self.data_record

    def save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)
        self.last_save = time.monotonic()

    def stop_requested(self, trainer: L.Trainer) -> bool:
        """Whether any process got a signal (in DDP every rank must save and stop at the same step)."""
        return bool(trainer.strategy.reduce_boolean_decision(self.signals.signum is not None, all=False))

    def stop(self, trainer: L.Trainer, pl_module: "PretrainModule") -> None:
        signum = self.signals.signum or signal.SIGTERM
        raise RunInterrupted(
            f"{signal.Signals(signum).name} at epoch {trainer.current_epoch}, step {pl_module.step_in_run}: "
            f"checkpoint saved in {self.path}; continue with `selfsup pretrain --resume {self.path.parent.parent}`",
            signum)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if pl_module.batches_done >= pl_module.steps_per_epoch:
            return  # the epoch end saves (and stops, when asked to) in a moment
        if self.stop_requested(trainer):
            self.save(trainer)
            self.stop(trainer, pl_module)
        by_steps = self.every_steps and pl_module.step_in_run % self.every_steps == 0
        by_time = self.every_minutes and time.monotonic() - self.last_save >= 60 * self.every_minutes
        if by_steps or by_time:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)
        if self.stop_requested(trainer):
            self.stop(trainer, pl_module)


class _Throughput(Callback):
    def __init__(self) -> None:
        self.start, self.items = time.perf_counter(), 0  # a resume of a finished run never calls on_train_start

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start, self.items = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.items += _batch_len(batch) * trainer.world_size


def pretrain(method: Method, data: DataSource, cfg: TrainConfig, run_dir: str | Path, monitor: Monitor | None = None,
             resume: bool = False, config_record: dict | None = None,
             heldout: DataSource | None = None) -> PretrainResult:
    """Train `method` on `data` (its `batch(index)` gives the raw batches) and write the run folder `run_dir`.

    `heldout`: documents never trained on, for a language model's per-epoch held-out curve (`heldout/perplexity`
    and `heldout/token_acc` in metrics.csv, `selfsup.evaluate.text.heldout_lm_metrics`); ignored by methods
    without `heldout_stats`.

    With `resume`, training continues from `run_dir/checkpoints/last.ckpt` up to `cfg.epochs`. The folder
    is locked meanwhile (`RunFolder.locked`): a second run in it fails at once.
    """
    run = RunFolder(run_dir)
    with run.locked():
        return fit_run(method, data, cfg, run, monitor, resume, config_record, heldout)


def fit_run(method: Method, data: DataSource, cfg: TrainConfig, run: RunFolder, monitor: Monitor | None,
            resume: bool, config_record: dict | None, heldout: DataSource | None = None) -> PretrainResult:
    world = (cfg.devices if isinstance(cfg.devices, int) else 1) * cfg.num_nodes
    if len(data) // world < cfg.batch_size:
        raise SelfSupError(f"{len(data)} training items are fewer than one batch of {cfg.batch_size} per process; "
                           f"lower --batch-size or use more data")
    steps_per_epoch = (len(data) // world) // cfg.batch_size
    ckpt_path = None
    if resume:
        if not run.last_checkpoint.exists():
            raise SelfSupError(f"nothing to resume in {run.path}: no checkpoints/last.ckpt")
        ckpt_path = str(run.last_checkpoint)
    record = dict(config_record or {}, train=asdict(cfg), status="running")
    run.remove_orphaned_temporaries()  # left by a process killed while writing
    run.write_config(record)
    if hasattr(data, "save_to"):
        data.save_to(run.path)  # e.g. a tokenizer that the run's weights depend on
    earlier_metrics = run.read_metrics() if resume else []  # Lightning's CSV logger starts the file afresh

    module = PretrainModule(method, cfg, steps_per_epoch, monitor, heldout)
    throughput = _Throughput()
    bar = cfg.progress_bar and sys.stderr.isatty()  # a bar redrawn per step would fill a log file
    signals = StopSignals()
    trainer = L.Trainer(
        max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
        strategy=cfg.strategy, precision=cfg.precision, default_root_dir=str(run.path),
        logger=[CSVLogger(str(run.path), name="", version=""), TensorBoardLogger(str(run.path), name="", version="tb")],
        callbacks=[Checkpoints(run.last_checkpoint, cfg.checkpoint_every_steps, cfg.checkpoint_every_minutes, signals,
                               checkpoint_data_record(record)),
                   throughput] + ([EpochLines()] if cfg.progress_bar and not bar else []),
        plugins=[SafetensorsCheckpointIO()], enable_checkpointing=False,  # Checkpoints writes last.ckpt
        enable_progress_bar=bar, enable_model_summary=False,
        num_sanity_val_steps=0, log_every_n_steps=cfg.log_every_n_steps, use_distributed_sampler=False,
        benchmark=True)  # cudnn.benchmark on GPUs: every step has the same shapes (the ragged batch is dropped)
    try:
        with warnings.catch_warnings(), signals.installed():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            warnings.filterwarnings("ignore", ".*Experiment logs directory.*")
            trainer.fit(module, train_dataloaders=batches_for(data, cfg.batch_size, cfg.seed, module, cfg.stream_workers),
                        ckpt_path=ckpt_path)
    except SIGTERMException as e:  # Lightning's own SIGTERM path (a signal it saw between our checks)
        stopped = RunInterrupted(f"SIGTERM at epoch {trainer.current_epoch}; the last checkpoint is "
                                 f"{run.last_checkpoint}; continue with `selfsup pretrain --resume {run.path}`",
                                 signal.SIGTERM)
        record_stop(run, record, trainer, "interrupted", stopped)
        raise stopped from e
    except RunInterrupted as e:
        record_stop(run, record, trainer, "interrupted", e)
        raise
    except BaseException as e:
        record_stop(run, record, trainer, "failed", e)
        raise
    finally:
        if trainer.is_global_zero and earlier_metrics:
            run.prepend_metrics(earlier_metrics)
    seconds = time.perf_counter() - throughput.start
    final = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if trainer.is_global_zero:
        digest = save_weights(method, run.weights)
        run.write_config(dict(record, status="done", epochs_done=trainer.current_epoch, final_metrics=final,
                              weights_sha256=digest))
    return PretrainResult(run.path, method, trainer.current_epoch, seconds, throughput.items / max(seconds, 1e-9), final,
                          trainer.is_global_zero)


def record_stop(run: RunFolder, record: dict, trainer: L.Trainer, status: str, error: BaseException) -> None:
    """config.json says why the run stopped (interrupted by a signal, or failed with an error), never
    `running` forever after."""
    if trainer.is_global_zero:
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:2000]
        run.write_config(dict(record, status=status, reason=reason, epochs_done=trainer.current_epoch))
