"""Fine-tuning with partial freezing, and the supervised baseline (same architecture, random init).

RotNet's protocol (Gidaris et al., 2018) freezes the first blocks (conv1, conv2) and trains the rest of
the encoder plus a new classifier; `freeze_upto=None` fine-tunes everything. `upto` reads the features
from an intermediate block instead of the last one (the classic MNIST notebook put its classifier on the
frozen conv2 output). The supervised baseline trains the same network from random initialisation on the
same labels, with the same number of steps, batch size, optimizer and augmentation.

Head normalisation (`head_norm`, the same for both): "auto" (the default) puts a BatchNorm without affine
parameters between the features and the new linear head when the encoder has no normalisation layer of its
own, as MAE's linear probe does (He et al., 2022, appendix A.2); "batchnorm" always does, "none" never. A
BatchNorm-free encoder hands the head features of a scale set by its init (about 0.02 for the plain ConvNet
and CPC's patch encoder, benchmarks/results/baseline_fit.md), which ties the head's useful learning rate to
the encoder's and left their supervised baselines below a linear probe on the same net's random features.
An encoder with BatchNorm or LayerNorm already hands over normalised features, so "auto" leaves it as it was.

Augmentation (on by default, for both): the light recipe of supervised training on small images, a
random crop of the zero-padded image (`padding` pixels) and, where the data says a mirror image keeps its
label (`hflip_keeps_label`: clothes yes, digits no), a horizontal flip. Applied to the raw uint8 batch
before the method's `encoder_input`, so every method's encoder is fed as in pretraining.
"""
from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.data.base import Batch, DataSource
from selfsup.errors import SelfSupError, unknown_name
from selfsup.methods.base import Method, build_method
from selfsup.nets.base import freeze_upto as freeze_blocks
from selfsup.nets.base import has_normalisation, set_frozen_eval
from selfsup.utils import move_to
from selfsup.views.geometry import random_shift_flip


HEAD_NORMS = ("auto", "batchnorm", "none")


def head_norm_used(encoder: nn.Module, head_norm: str) -> bool:
    """Whether a classifier on `encoder` standardises its features before the head (see the module docstring)."""
    if head_norm not in HEAD_NORMS:
        raise unknown_name("head_norm", head_norm, HEAD_NORMS)
    return head_norm == "batchnorm" or (head_norm == "auto" and not has_normalisation(encoder))


def finetune_head(encoder: nn.Module, finetune_kwargs: dict) -> str:
    """"batchnorm" or "raw": the head fine-tuning and the supervised baseline get under these options, as
    recorded with results (the bench's baseline groups, an evaluation's settings)."""
    return "batchnorm" if head_norm_used(encoder, finetune_kwargs.get("head_norm", "auto")) else "raw"


class Classifier(nn.Module):
    """An encoder (partly frozen) followed by a new linear head, fed the way the method feeds it."""

    def __init__(self, method: Method, num_classes: int, upto: str | None, freeze_upto: str | None,
                 head_norm: str = "auto"):
        super().__init__()
        self.method_input = method.encoder_input  # bound method: how pretraining fed the encoder
        self.encoder = copy.deepcopy(method.encoder)
        self.upto = upto
        self.frozen = freeze_blocks(self.encoder, freeze_upto)
        dim = self.encoder.feature_dim(upto) if upto else self.encoder.feature_dim()
        norm = nn.BatchNorm1d(dim, affine=False) if head_norm_used(self.encoder, head_norm) else nn.Identity()
        self.head = nn.Sequential(norm, nn.Linear(dim, num_classes))

    def forward(self, batch: Batch) -> torch.Tensor:
        x = self.method_input(batch)
        features = self.encoder(x, upto=self.upto) if self.upto else self.encoder(x)
        return self.head(features)

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if mode:
            set_frozen_eval(self.encoder)  # frozen blocks keep their BatchNorm statistics
        return self


@torch.no_grad()
def accuracy(model: nn.Module, data: DataSource, batch_size: int = 512, device: str | torch.device = "cpu") -> float:
    model.eval()
    correct = 0
    for index in torch.arange(len(data)).split(batch_size):
        logits = model(move_to(data.batch(index), device))
        correct += (logits.argmax(1).cpu() == data.labels[index]).sum().item()
    return correct / len(data)


def augment_labeled(batch: Batch, data: DataSource, padding: int, generator: torch.Generator) -> Batch:
    """Shift (and flip, where the data allows) a raw image batch, or the images of an image-caption batch;
    other batches (text) pass unchanged."""
    if isinstance(batch, dict) and "images" in batch:
        return batch | {"images": augment_labeled(batch["images"], data, padding, generator)}
    if not isinstance(batch, torch.Tensor) or batch.dim() != 4 or padding < 0:
        return batch
    return random_shift_flip(batch, padding, flip=getattr(data, "hflip_keeps_label", False), generator=generator)


def finetune(method: Method, labeled: DataSource, test: DataSource, freeze_upto: str | None = None,
             upto: str | None = None, epochs: int = 30, min_steps: int = 300, max_steps: int = 1500,
             batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0, augment: bool = True,
             padding: int = 2, head_norm: str = "auto", seed: int = 0,
             device: str | torch.device = "cpu") -> dict[str, float]:
    """Train a new linear head (and the unfrozen encoder blocks) on `labeled`; accuracy on `test`.

    The step budget is `epochs` over the labeled set, clamped to [`min_steps`, `max_steps`], so tiny label
    budgets still get enough updates and large ones stay affordable; the supervised baseline gets exactly
    the same budget.
    """
    if not isinstance(augment, bool):
        raise SelfSupError(f"augment={augment!r}: fine-tuning takes True or False; augment='validation' is for "
                           "the tuned protocols (evaluate_protocols, label_sweep), which try both")
    torch.manual_seed(seed)
    num_classes = int(max(labeled.labels.max(), test.labels.max())) + 1
    model = Classifier(method, num_classes, upto, freeze_upto, head_norm).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    batch_size = min(batch_size, len(labeled))
    steps = min(max(epochs * (len(labeled) // batch_size), min_steps), max_steps)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    step = 0
    while step < steps:
        for index in torch.randperm(len(labeled), generator=g).split(batch_size):
            if len(index) < batch_size or step >= steps:
                continue  # drop the ragged last batch: BatchNorm and equal-size steps
            batch = labeled.batch(index)
            if augment:
                batch = augment_labeled(batch, labeled, padding, g)
            batch = move_to(batch, device)
            loss = F.cross_entropy(model(batch), labeled.labels[index].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
    return {"acc": accuracy(model, test, device=device), "train_acc": accuracy(model, labeled, device=device),
            "steps": steps, "frozen": ",".join(model.frozen)}


def fresh_copy(method: Method, seed: int = 0) -> Method:
    """The same method and architecture with freshly initialised weights."""
    torch.manual_seed(seed)
    return build_method(method.name, method.spec, **asdict(method.config))


def supervised_baseline(method: Method, labeled: DataSource, test: DataSource, upto: str | None = None, seed: int = 0,
                        **kwargs: Any) -> dict[str, float]:
    """The same encoder architecture trained from random init on the same labels and budget, nothing frozen."""
    return finetune(fresh_copy(method, seed), labeled, test, freeze_upto=None, upto=upto, seed=seed, **kwargs)
