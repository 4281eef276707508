"""The shared momentum machinery of MoCo and BYOL: the EMA update against a hand computation, the frozen copy."""
import pytest
import torch
from torch import nn

from selfsup.nets.momentum import cosine_tau, ema_update, frozen_copy
from selfsup.nets.split_batchnorm import shuffle_groups


def _linear(weight: float, bias: float) -> nn.Linear:
    layer = nn.Linear(1, 1)
    with torch.no_grad():
        layer.weight.fill_(weight)
        layer.bias.fill_(bias)
    return layer


def test_ema_update_equals_the_hand_computation() -> None:
    target, online = _linear(1.0, -2.0), _linear(3.0, 4.0)
    ema_update(target, online, tau=0.9)
    assert target.weight.item() == pytest.approx(0.9 * 1.0 + 0.1 * 3.0)  # 1.2
    assert target.bias.item() == pytest.approx(0.9 * -2.0 + 0.1 * 4.0)  # -1.4
    assert (online.weight.item(), online.bias.item()) == (3.0, 4.0)  # the online network is only read
    ema_update(target, online, tau=0.5)
    assert target.weight.item() == pytest.approx(0.5 * 1.2 + 0.5 * 3.0)  # 2.1
    assert cosine_tau(0.9, 0.5) == pytest.approx(0.95)


def test_frozen_copy_starts_equal_gets_no_gradient_and_shares_no_storage() -> None:
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    twin = frozen_copy(online)
    for o, t in zip(online.parameters(), twin.parameters()):
        assert torch.equal(o, t) and o.requires_grad and not t.requires_grad
        assert o.data_ptr() != t.data_ptr()
    x = torch.randn(5, 3)
    (online(x).sum() + twin(x).sum()).backward()
    assert all(p.grad is not None for p in online.parameters())
    assert all(p.grad is None for p in twin.parameters())


def test_shuffle_groups_inverse_restores_the_order() -> None:
    torch.manual_seed(0)
    x = torch.arange(10.0)[:, None]
    shuffled, idx_unshuffle = shuffle_groups(x, 3)
    assert not torch.equal(shuffled, x) and torch.equal(shuffled[idx_unshuffle], x)
