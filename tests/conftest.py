"""Shared fixtures: small synthetic image data with real structure (tests never download anything)."""
from __future__ import annotations

import torch
import pytest

from selfsup.data.base import ImageData


def synthetic_images(n: int = 512, classes: int = 4, size: int = 28, seed: int = 0) -> ImageData:
    """Class c is a bright bar at an orientation/position of its own plus noise: learnable, not rotation-symmetric."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 40, (n, 1, size, size), generator=g, dtype=torch.uint8)
    for c in range(classes):
        idx = labels == c
        block = images[idx]
        row = 3 + 5 * c
        block[:, :, row:row + 3, 2:size - 8] = 250  # a horizontal bar at a class-specific height, off-centre
        block[:, :, 2:6, 2:6] = 200  # a corner mark, so rotations are distinguishable
        images[idx] = block
    return ImageData(images, labels, [f"class{c}" for c in range(classes)], name="synthetic")


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tests use tiny tensors: a second intra-op thread gains nothing and, when the machine is busy,
    thread contention slows small ops tenfold or more. (Spawned processes set their own threads.)"""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_data() -> ImageData:
    return synthetic_images()


TINY = {"encoder_kwargs": {"widths": (8, 8, 8)}}


def fit_batch(method, batch, steps: int, lr: float) -> tuple[list[float], dict]:
    """Adam on one fixed batch for `steps` steps: the loss of every step and the last step's metrics.

    The overfitting tests use it: a method whose loss and gradients are right can memorise one batch.
    """
    optimizer = torch.optim.Adam(method.parameters(), lr=lr)
    losses, metrics = [], {}
    for _ in range(steps):
        loss, metrics = method.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, metrics
