"""MoCo v1/v2: key encoder gets no gradient and moves by the momentum rule; exact queue updates; loss."""
import pytest
import torch
from torch import nn

from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.losses.contrastive import info_nce
from selfsup.methods.base import build_method

SPEC = DataSpec("image", channels=1, height=28, width=28)
TINY = {"encoder_kwargs": {"widths": (8, 8, 8), "batch_norm": True}, "dim": 4, "queue_size": 8}


def _batch(n: int = 4) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_v1_and_v2_differ_as_in_the_papers() -> None:
    v1 = build_method("mocov1", SPEC, **TINY)
    v2 = build_method("mocov2", SPEC, **TINY)
    assert isinstance(v1.head, nn.Linear) and isinstance(v2.head, nn.Sequential)
    assert (v1.config.temperature, v2.config.temperature) == (0.07, 0.2)
    assert v1.config.key_momentum == v2.config.key_momentum == 0.999
    assert v1.view_config.blur_p == 0 and v2.view_config.blur_p == 0.5
    assert v2.config.schedule == "cosine"
    assert v1.queue.shape == (4, 8) and torch.allclose(v1.queue.norm(dim=0), torch.ones(8))
    assert "queue" in dict(v1.named_buffers()) and "queue_ptr" in dict(v1.named_buffers())


def test_key_encoder_gets_no_gradient() -> None:
    torch.manual_seed(0)
    method = build_method("mocov2", SPEC, **TINY)
    loss, metrics = method.loss(_batch())
    loss.backward()
    key_params = list(method.encoder_k.parameters()) + list(method.head_k.parameters())
    assert all(not p.requires_grad and p.grad is None for p in key_params)
    assert all(p.grad is not None for p in method.encoder.parameters())
    assert len(method.trainable_parameters()) == len(list(method.encoder.parameters())) + len(list(method.head.parameters()))
    assert 0 <= float(metrics["pretext_acc"]) <= 1


def test_after_step_moves_the_key_encoder_by_the_momentum_rule() -> None:
    torch.manual_seed(0)
    method = build_method("mocov1", SPEC, **TINY)
    with torch.no_grad():
        for p in list(method.encoder.parameters()) + list(method.head.parameters()):
            p.add_(torch.randn_like(p))
    query = [p.detach().clone() for p in list(method.encoder.parameters()) + list(method.head.parameters())]
    key = [p.detach().clone() for p in list(method.encoder_k.parameters()) + list(method.head_k.parameters())]
    method.after_step(0.3)
    after = list(method.encoder_k.parameters()) + list(method.head_k.parameters())
    for new, k, q in zip(after, key, query):
        torch.testing.assert_close(new, 0.999 * k + 0.001 * q)


def test_enqueue_writes_keys_in_order_and_wraps_around() -> None:
    method = build_method("mocov1", SPEC, **TINY)
    initial = method.queue.clone()
    a, b, c = torch.randn(3, 3, 4)
    method._dequeue_and_enqueue(a)
    assert int(method.queue_ptr) == 3
    assert torch.equal(method.queue[:, :3], a.T) and torch.equal(method.queue[:, 3:], initial[:, 3:])
    method._dequeue_and_enqueue(b)
    method._dequeue_and_enqueue(c)  # slots 6, 7 then 0
    assert int(method.queue_ptr) == 1
    assert torch.equal(method.queue[:, 6:8], c[:2].T) and torch.equal(method.queue[:, 0], c[2])
    assert torch.equal(method.queue[:, 1:3], a[1:].T) and torch.equal(method.queue[:, 3:6], b.T)
    with pytest.raises(SelfSupError, match="queue_size"):
        method._dequeue_and_enqueue(torch.randn(9, 4))


def test_loss_is_info_nce_against_the_queue_then_keys_are_enqueued() -> None:
    torch.manual_seed(0)
    method = build_method("mocov2", SPEC, **TINY)
    v_q, v_k = torch.rand(2, 4, 1, 28, 28)
    queue_before = method.queue.clone()
    loss, _ = method.loss_from_views(v_q, v_k)
    with torch.no_grad():
        q = method.query(v_q)
        k = method.keys(v_k)
    expected = info_nce(q, k, queue_before.T, temperature=0.2, normalize=False)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    torch.testing.assert_close(method.queue[:, :4], k.T)
    assert int(method.queue_ptr) == 4


def test_eval_mode_leaves_the_queue_alone_and_single_process_shuffle_is_identity() -> None:
    method = build_method("mocov1", SPEC, **TINY).eval()
    before = method.queue.clone()
    method.loss(_batch())
    assert torch.equal(method.queue, before) and int(method.queue_ptr) == 0
    x = torch.randn(5, 3)
    shuffled, idx = method._batch_shuffle_ddp(x)
    assert torch.equal(shuffled, x) and torch.equal(method._batch_unshuffle_ddp(shuffled, idx), x)


def test_one_training_step_and_examples() -> None:
    torch.manual_seed(0)
    method = build_method("mocov1", SPEC, **TINY)
    opt = torch.optim.SGD(method.trainable_parameters(), lr=0.03, momentum=0.9)
    loss, _ = method.loss(_batch())
    opt.zero_grad()
    loss.backward()
    opt.step()
    method.after_step(0.5)
    assert torch.isfinite(loss)
    assert set(method.examples(_batch())) == {"images", "query_view", "key_view"}
    assert method.features(_batch(3)).shape == (3, method.feature_dim)


def test_queue_is_scaled_to_five_percent_of_the_data_by_default():
    from selfsup.data.base import DataSpec
    from selfsup.methods.moco import MoCoConfig, queue_length
    assert queue_length(MoCoConfig(), DataSpec(size=60_000)) == 3072  # 3000 rounded up to whole 256s
    assert queue_length(MoCoConfig(), DataSpec(size=1_281_167)) == 64256  # ImageNet: about the paper's 65536
    assert queue_length(MoCoConfig(), DataSpec(size=2_000)) == 1024  # floor
    assert queue_length(MoCoConfig(), DataSpec(size=0)) == 4096  # size unknown
    assert queue_length(MoCoConfig(queue_size=8), DataSpec(size=60_000)) == 8
