"""Linear probe: a linear classifier trained on frozen, standardised features (the standard protocol of
Zhang et al. 2016 / Kolesnikov et al. 2019 / Chen et al. 2020, here with Adam on precomputed features)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def linear_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, epochs: int = 100,
                 lr: float = 1e-2, weight_decay: float = 1e-4, batch_size: int = 256, max_steps: int = 3000,
                 seed: int = 0) -> dict[str, float]:
    """Accuracy of a linear classifier on frozen features; features are standardised with train statistics.

    `epochs` passes over the data, capped at `max_steps` updates so that probing tens of thousands of
    labels stays affordable (a linear model on fixed features converges long before).
    """
    g = torch.Generator().manual_seed(seed)
    mean, std = train_x.mean(0), train_x.std(0, unbiased=False).clamp_min(1e-6)
    xtr, xte = (train_x - mean) / std, (test_x - mean) / std
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    head = nn.Linear(xtr.shape[1], num_classes)
    with torch.no_grad():  # seeded init, independent of the global RNG
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.01)
        head.bias.zero_()
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, -(-len(xtr) // batch_size))
    steps = min(epochs * steps_per_epoch, max_steps)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for step in range(steps):
        if step % steps_per_epoch == 0:
            order = iter(torch.randperm(len(xtr), generator=g).split(batch_size))
        index = next(order)
        loss = F.cross_entropy(head(xtr[index]), train_y[index])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        train_acc = (head(xtr).argmax(1) == train_y).float().mean().item()
        acc = (head(xte).argmax(1) == test_y).float().mean().item()
    return {"acc": acc, "train_acc": train_acc}
