"""Frozen features from a method's encoder, over a whole data object, in eval mode, and a cache of them.

An evaluation computes the frozen encoder's features of its label pool and test set once; every protocol
that reads features (linear probe, kNN), every label budget and every seed then indexes into them.
`FeatureCache` keeps them on disk too (RUN/features/), keyed by the encoder's weights, the data's bytes and
the layer read, so that a resumed or extended evaluation and the run's report do not extract them again.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from selfsup.data.base import DataSource
from selfsup.errors import SelfSupError
from selfsup.methods.base import Method
from selfsup.utils import atomic_write, hash_tensor, move_to


@torch.no_grad()
def extract_features(method: Method, data: DataSource, upto: str | None = None, batch_size: int = 512,
                     device: torch.device | str | None = None) -> Tensor:
    """(N, D) float features of every item of `data`, via `method.features(data.batch(idx), upto)`."""
    device = torch.device(device) if device is not None else next(method.parameters()).device
    was_training = method.training
    method.eval()
    chunks = []
    for index in torch.arange(len(data)).split(batch_size):
        chunks.append(method.features(move_to(data.batch(index), device), upto=upto).float().cpu())
    method.train(was_training)
    return torch.cat(chunks)


def _hash_tensors(h: "hashlib._Hash", value: Any) -> None:
    if isinstance(value, Tensor):
        hash_tensor(h, value)
    elif isinstance(value, dict):
        for key in sorted(value):
            h.update(str(key).encode())
            _hash_tensors(h, value[key])
    elif isinstance(value, (list, tuple)):
        for v in value:
            _hash_tensors(h, v)
    else:
        h.update(repr(value).encode())


def data_fingerprint(data: DataSource, batch_size: int = 4096) -> str:
    """sha256 of every item's raw batch (uint8 images, token ids...) in order: equal data, equal fingerprint."""
    h = hashlib.sha256(str(len(data)).encode())
    for index in torch.arange(len(data)).split(batch_size):
        _hash_tensors(h, data.batch(index))
    return h.hexdigest()


def module_fingerprint(module: torch.nn.Module) -> str:
    """sha256 of a module's class and state (parameters and buffers): equal weights, equal fingerprint."""
    h = hashlib.sha256(type(module).__qualname__.encode())
    _hash_tensors(h, dict(module.state_dict()))
    return h.hexdigest()


class FeatureCache:
    """Features on disk in `folder` (None: nothing is kept), one safetensors file per (weights, data, reader).

    `get(method, data, extract, tag)` returns `extract(method, data)` computed once: the key is the sha256
    of the method's weights, the data's bytes and `tag` (the layer read, the pooling). Files are written
    atomically, so an interrupted write leaves no half file; `hits` and `misses` count what happened.
    """

    def __init__(self, folder: str | Path | None):
        self.folder = None if folder is None else Path(folder)
        self.hits = 0
        self.misses = 0

    def key(self, method: torch.nn.Module, data: DataSource, tag: str) -> str:
        parts = f"{module_fingerprint(method)}|{data_fingerprint(data)}|{tag}"
        return hashlib.sha256(parts.encode()).hexdigest()[:32]

    def get(self, method: Method, data: DataSource, extract: Callable[[Method, DataSource], Tensor],
            tag: str = "") -> Tensor:
        if self.folder is None:
            self.misses += 1
            return extract(method, data)
        path = self.folder / f"{self.key(method, data, tag)}.safetensors"
        if path.exists():
            try:
                features = load_file(str(path))["features"]
                if len(features) == len(data):
                    self.hits += 1
                    return features
            except Exception:  # a damaged file is recomputed and replaced, never trusted
                pass
        self.misses += 1
        features = extract(method, data)
        try:
            atomic_write(path, lambda tmp: save_file({"features": features.contiguous()}, tmp))
        except (OSError, SelfSupError) as e:  # a read-only run or a full disk: go on without keeping them
            warnings.warn(f"frozen features not kept in {self.folder} ({e}); later evaluations extract them again")
            self.folder = None
        return features
