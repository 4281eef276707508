"""Momentum copies of a network: MoCo's key encoder and BYOL's target, built and moved the same way.

A momentum copy starts equal to the network it follows, gets no gradient, and moves only by an
exponential moving average (EMA) of that network's parameters after each optimizer step. MoCo's
"momentum update" (He et al. 2020, eq. 2: theta_k <- m theta_k + (1 - m) theta_q) and BYOL's target update
(Grill et al. 2020: xi <- tau xi + (1 - tau) theta) are the same rule under two names. The EMA covers
parameters; a copy's BatchNorm running statistics come from its own forward passes (as in both papers' code).
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy that gets no gradient: only `ema_update` moves it, and the optimizer never sees it
    (`Method.trainable_parameters` keeps parameters that require grad)."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * target + (1 - tau) * online, parameter by parameter (in place)."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(tau).add_(o.detach(), alpha=1 - tau)


def cosine_tau(base_tau: float, progress: float) -> float:
    """BYOL's EMA rate: tau = 1 - (1 - base_tau) (cos(pi * progress) + 1) / 2, base_tau at the start, 1 at
    the end (progress in [0, 1])."""
    return 1 - (1 - base_tau) * (math.cos(math.pi * progress) + 1) / 2
