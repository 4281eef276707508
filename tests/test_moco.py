"""MoCo v1/v2: key encoder gets no gradient and moves by the momentum rule; exact queue updates; loss;
one-process shuffling BN (split BatchNorm + key shuffle) leaves no BatchNorm group shared by a query and its key."""
import math

import pytest
import torch
from torch import nn

import selfsup.methods.moco as moco
from conftest import GRAY_SPEC as SPEC, TINY_OPTIONS, noise_images
from selfsup.errors import SelfSupError
from selfsup.losses.contrastive import info_nce
from selfsup.methods.base import build_method
from selfsup.nets.registry import build_encoder
from selfsup.nets.split_batchnorm import SplitBatchNorm2d, batchnorm_splits, key_shuffle, use_split_batchnorm

TINY = TINY_OPTIONS["mocov1"]
TINY32 = TINY | {"queue_size": 32}


def test_v1_and_v2_differ_as_in_the_papers() -> None:
    v1 = build_method("mocov1", SPEC, **TINY)
    v2 = build_method("mocov2", SPEC, **TINY)
    assert isinstance(v1.head, nn.Linear) and isinstance(v2.head, nn.Sequential)
    assert (v1.config.temperature, v2.config.temperature) == (0.07, 0.1)  # v2: tuned (the paper: 0.2)
    assert v1.config.key_momentum == v2.config.key_momentum == 0.99  # scaled to runs of a few thousand steps
    assert v1.config.split_bn == v2.config.split_bn == 8
    assert v1.view_config.blur_p == 0 and v2.view_config.blur_p == 0.5
    assert v2.config.schedule == "cosine"
    assert v1.queue.shape == (4, 8) and torch.allclose(v1.queue.norm(dim=0), torch.ones(8))
    assert "queue" in dict(v1.named_buffers()) and "queue_ptr" in dict(v1.named_buffers())


def test_key_encoder_gets_no_gradient() -> None:
    torch.manual_seed(0)
    method = build_method("mocov2", SPEC, **TINY)
    loss, metrics = method.loss(noise_images(4))
    loss.backward()
    key_params = list(method.encoder_k.parameters()) + list(method.head_k.parameters())
    assert all(not p.requires_grad and p.grad is None for p in key_params)
    assert all(p.grad is not None for p in method.encoder.parameters())
    assert len(method.trainable_parameters()) == len(list(method.encoder.parameters())) + len(list(method.head.parameters()))
    assert 0 <= float(metrics["pretext_acc"]) <= 1


@pytest.mark.parametrize("options", [{}, {"key_momentum": 0.5}])
def test_after_step_moves_the_key_encoder_by_the_momentum_rule(options: dict) -> None:
    torch.manual_seed(0)
    method = build_method("mocov1", SPEC, **TINY, **options)
    m = options.get("key_momentum", 0.99)
    assert method.config.key_momentum == m
    with torch.no_grad():
        for p in list(method.encoder.parameters()) + list(method.head.parameters()):
            p.add_(torch.randn_like(p))
    query = [p.detach().clone() for p in list(method.encoder.parameters()) + list(method.head.parameters())]
    key = [p.detach().clone() for p in list(method.encoder_k.parameters()) + list(method.head_k.parameters())]
    method.after_step(0.3)
    after = list(method.encoder_k.parameters()) + list(method.head_k.parameters())
    assert len(after) == len(key) == len(query) > 0
    for new, k, q in zip(after, key, query):
        torch.testing.assert_close(new, m * k + (1 - m) * q, rtol=1e-6, atol=1e-7)  # key = m key + (1 - m) query


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
    torch.manual_seed(1)  # the same key shuffle in both calls
    loss, _ = method.loss_from_views(v_q, v_k)
    torch.manual_seed(1)
    with torch.no_grad():
        q = method.query(v_q)
        k = method.keys(v_k)
    expected = info_nce(q, k, queue_before.T, temperature=0.1, normalize=False)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    torch.testing.assert_close(method.queue[:, :4], k.T)
    assert int(method.queue_ptr) == 4


def test_eval_mode_leaves_the_queue_alone_and_single_process_ddp_shuffle_is_identity() -> None:
    method = build_method("mocov1", SPEC, **TINY).eval()
    before = method.queue.clone()
    method.loss(noise_images(4))
    assert torch.equal(method.queue, before) and int(method.queue_ptr) == 0
    assert method.bn_groups(256) == 1  # eval mode: plain BatchNorm, nothing shuffled
    x = torch.randn(5, 3)
    shuffled, idx = method._batch_shuffle_ddp(x)
    assert torch.equal(shuffled, x) and torch.equal(method._batch_unshuffle_ddp(shuffled, idx), x)


def test_examples_show_the_query_and_key_views() -> None:
    method = build_method("mocov1", SPEC, **TINY)
    assert set(method.examples(noise_images(4))) == {"images", "query_view", "key_view"}


def test_queue_is_scaled_to_five_percent_of_the_data_by_default():
    from selfsup.data.base import DataSpec
    from selfsup.methods.moco import MoCoConfig, queue_length
    assert queue_length(MoCoConfig(), DataSpec(size=60_000)) == 3072  # 3000 rounded up to whole 256s
    assert queue_length(MoCoConfig(), DataSpec(size=1_281_167)) == 64256  # ImageNet: about the paper's 65536
    assert queue_length(MoCoConfig(), DataSpec(size=2_000)) == 1024  # floor
    assert queue_length(MoCoConfig(), DataSpec(size=0)) == 4096  # size unknown
    assert queue_length(MoCoConfig(queue_size=8), DataSpec(size=60_000)) == 8


# --- split BatchNorm ---------------------------------------------------------------------------------------
def _trained_bn(bn: nn.BatchNorm2d) -> nn.BatchNorm2d:
    """Non-trivial affine parameters and running statistics."""
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
    return bn


def test_split_batchnorm_normalises_each_group_alone_in_training() -> None:
    torch.manual_seed(0)
    split = _trained_bn(SplitBatchNorm2d(3))
    x = torch.randn(12, 3, 5, 5) * 3 + 1
    start = {k: v.clone() for k, v in split.state_dict().items()}
    with batchnorm_splits(split, 4):
        y = split(x)
    running = split.running_mean.clone(), split.running_var.clone()
    # Each group of 3 is normalised exactly as a plain BatchNorm2d would normalise it alone...
    for i, part in enumerate(x.tensor_split(4)):
        plain = nn.BatchNorm2d(3)
        plain.load_state_dict(start)
        torch.testing.assert_close(y[3 * i:3 * (i + 1)], plain(part))
    # ... so changing group 2 changes group 2's output only.
    x2 = x.clone()
    x2[6:9] = torch.randn(3, 3, 5, 5) * 10
    with batchnorm_splits(split, 4):
        y2 = split(x2)
    assert torch.equal(y2[:6], y[:6]) and torch.equal(y2[9:], y[9:]) and not torch.allclose(y2[6:9], y[6:9])
    # Running statistics: the mean over groups of the group updates, each from the same start.
    var, mean = torch.var_mean(x.view(4, 3, 3, 5, 5), dim=(1, 3, 4))  # unbiased, as BatchNorm's running var
    torch.testing.assert_close(running[0], 0.9 * start["running_mean"] + 0.1 * mean.mean(0))
    torch.testing.assert_close(running[1], 0.9 * start["running_var"] + 0.1 * var.mean(0))
    assert int(split.num_batches_tracked) == 2 and split.num_splits == 1  # back to plain after the block


@pytest.mark.parametrize("options", [{}, {"affine": False, "track_running_stats": False}])
def test_split_batchnorm_gradients_are_those_of_batchnorm_on_each_group(options: dict) -> None:
    torch.manual_seed(0)
    split = SplitBatchNorm2d(3, **options)
    if split.affine:
        _trained_bn(split)
    plain = nn.BatchNorm2d(3, **options)
    plain.load_state_dict(split.state_dict())
    x = (torch.randn(11, 3, 4, 4) * 2 + 1).contiguous(memory_format=torch.channels_last).requires_grad_()
    weights = torch.randn(11, 3, 4, 4)
    with batchnorm_splits(split, 3):
        (split(x) * weights).sum().backward()
    x_ref = x.detach().clone().requires_grad_()
    (torch.cat([plain(part) for part in x_ref.tensor_split(3)]) * weights).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    for p, p_ref in zip(split.parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad)


def test_split_batchnorm_takes_uneven_groups_and_is_plain_batchnorm_in_eval_and_outside_the_block() -> None:
    torch.manual_seed(0)
    split = _trained_bn(SplitBatchNorm2d(3))
    plain = nn.BatchNorm2d(3)
    plain.load_state_dict(split.state_dict())
    x = torch.randn(10, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    with batchnorm_splits(split, 3):  # 10 images: groups of 4, 3, 3
        y = split(x)
    ref = nn.BatchNorm2d(3).train()
    for part, out in zip(x.split([4, 3, 3]), y.split([4, 3, 3])):
        ref.load_state_dict(plain.state_dict())
        torch.testing.assert_close(out, ref(part))
    assert y.is_contiguous(memory_format=torch.channels_last)  # the layout the next conv expects
    split.load_state_dict(plain.state_dict())
    split.eval(), plain.eval()
    with batchnorm_splits(split, 3):  # eval: running statistics, exactly nn.BatchNorm2d
        assert torch.equal(split(x), plain(x))
    split.train(), plain.train()
    assert torch.equal(split(x), plain(x))  # training outside the block (downstream fine-tuning): plain BN
    assert torch.equal(split.running_var, plain.running_var)


def test_encoder_state_dict_is_unchanged_and_loads_into_a_plain_encoder() -> None:
    torch.manual_seed(0)
    method = build_method("mocov2", SPEC, **(TINY | {"queue_size": 32}))
    assert any(isinstance(m, SplitBatchNorm2d) for m in method.encoder.modules())
    assert any(isinstance(m, SplitBatchNorm2d) for m in method.encoder_k.modules())
    method.loss(noise_images(16))  # moves the running statistics in 8 groups
    plain = build_encoder("convnet", in_channels=1, image_size=28, **TINY["encoder_kwargs"])
    assert not any(isinstance(m, SplitBatchNorm2d) for m in plain.modules())
    assert list(plain.state_dict()) == list(method.encoder.state_dict())
    plain.load_state_dict(method.encoder.state_dict())  # strict
    x = torch.rand(10, 1, 28, 28)
    plain.eval(), method.encoder.eval()
    assert torch.equal(plain(x), method.encoder(x))
    plain.train(), method.encoder.train()  # fine-tuning: plain BatchNorm, any batch size
    assert torch.equal(plain(x), method.encoder(x))
    # A checkpoint moves between split_bn on and off (and older runs' checkpoints load).
    off = build_method("mocov2", SPEC, **(TINY | {"queue_size": 32}), split_bn=0)
    assert not any(isinstance(m, SplitBatchNorm2d) for m in off.modules())
    off.load_state_dict(method.state_dict())
    method.load_state_dict(off.state_dict())


def test_use_split_batchnorm_keeps_the_parameter_objects() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Sequential(nn.BatchNorm2d(2)))
    params, buffers = list(net.parameters()), list(net.buffers())
    use_split_batchnorm(net)
    assert isinstance(net[1], SplitBatchNorm2d) and isinstance(net[2][0], SplitBatchNorm2d)
    assert all(a is b for a, b in zip(net.parameters(), params)) and len(list(net.parameters())) == len(params)
    assert all(a is b for a, b in zip(net.buffers(), buffers))


def test_bn_groups_fall_back_for_small_batches_and_are_off_when_multi_process(monkeypatch) -> None:
    method = build_method("mocov1", SPEC, **(TINY | {"queue_size": 32}))
    assert [method.bn_groups(n) for n in (256, 100, 16, 10, 3, 2)] == [8, 8, 8, 5, 1, 1]
    loss, _ = method.loss(noise_images(10))  # 10 is no multiple of 8: 5 groups of 2
    assert torch.isfinite(loss)
    assert build_method("mocov1", SPEC, **TINY, split_bn=0).bn_groups(256) == 1
    no_bn = build_method("mocov1", SPEC, **(TINY | {"encoder_kwargs": {"widths": (8, 8, 8)}}))
    assert no_bn.bn_groups(256) == 1  # no BatchNorm, no leak, no shuffle
    monkeypatch.setattr(moco, "is_distributed", lambda: True)
    assert method.bn_groups(256) == 1  # multi-process: the authors' cross-process shuffle instead


# --- the key path: no BatchNorm group shared by a query and its key -----------------------------------------
@pytest.mark.parametrize("n,groups", [(256, 8), (32, 8), (4, 2), (10, 3), (100, 8), (16, 8), (6, 3)])
def test_key_shuffle_deals_every_query_group_across_the_key_groups(n: int, groups: int) -> None:
    torch.manual_seed(n)
    idx = key_shuffle(n, groups)
    assert sorted(idx.tolist()) == list(range(n))
    query_groups = [set(part.tolist()) for part in torch.arange(n).tensor_split(groups)]
    key_groups = [set(part.tolist()) for part in idx.tensor_split(groups)]
    for kg in key_groups:
        assert kg not in query_groups
        for qg in query_groups:  # as even as the group sizes allow
            assert len(kg & qg) <= math.ceil(len(kg) / groups)
    if n == 256:
        assert all(len(kg & qg) == 4 for kg in key_groups for qg in query_groups)


def _bn_groups_seen(method, im: torch.Tensor) -> tuple[list[set[int]], list[set[int]]]:
    """For each image n, the images in its BatchNorm group at the first BatchNorm of the query encoder and
    of the key encoder (the first conv is per image, and both encoders start equal: rows identify images)."""
    seen = {}

    def record(name):
        return lambda module, args: seen.__setitem__(name, (args[0].detach().clone(), getattr(module, "num_splits", 1)))
    bn_q = next(m for m in method.encoder.modules() if isinstance(m, nn.BatchNorm2d))
    bn_k = next(m for m in method.encoder_k.modules() if isinstance(m, nn.BatchNorm2d))
    handles = [bn_q.register_forward_pre_hook(record("q")), bn_k.register_forward_pre_hook(record("k"))]
    try:
        method.loss_from_views(im, im.clone())  # the same views: the key encoder sees the query's rows
    finally:
        for h in handles:
            h.remove()
    (rows_q, splits_q), (rows_k, splits_k) = seen["q"], seen["k"]
    image_of_k_row = torch.cdist(rows_k.flatten(1), rows_q.flatten(1)).argmin(1)  # key row -> image
    assert sorted(image_of_k_row.tolist()) == list(range(len(im)))
    query_sets, key_sets = [None] * len(im), [None] * len(im)
    for part in torch.arange(len(im)).tensor_split(max(splits_q, 1)):
        for i in part.tolist():
            query_sets[i] = set(part.tolist())
    for part in image_of_k_row.tensor_split(max(splits_k, 1)):
        for i in part.tolist():
            key_sets[i] = set(part.tolist())
    return query_sets, key_sets


def test_one_process_key_never_shares_its_querys_batchnorm_group() -> None:
    im = torch.rand(32, 1, 28, 28)
    # Without the fix (one process, plain BatchNorm): every query's BN batch is its key's BN batch, the
    # leak MoCo's section 3.3 warns about.
    torch.manual_seed(0)
    query_sets, key_sets = _bn_groups_seen(build_method("mocov1", SPEC, **TINY32, split_bn=0), im)
    assert all(q == k == set(range(32)) for q, k in zip(query_sets, key_sets))
    # With it: 8 groups of 4; each key's group holds one image from each of 4 query groups, so the only
    # image that a key's BN group shares with its query's BN group is the image itself.
    torch.manual_seed(0)
    query_sets, key_sets = _bn_groups_seen(build_method("mocov1", SPEC, **TINY32), im)
    for n in range(32):
        assert len(query_sets[n]) == len(key_sets[n]) == 4
        assert query_sets[n] & key_sets[n] == {n}


def test_a_key_does_not_depend_on_the_other_images_of_its_querys_group() -> None:
    torch.manual_seed(0)
    method = build_method("mocov1", SPEC, **TINY)
    im_k = torch.rand(32, 1, 28, 28)
    torch.manual_seed(1)
    k = method.keys(im_k)
    changed = im_k.clone()
    changed[1:4] = torch.rand(3, 1, 28, 28)  # image 0's query group is images 0-3 (8 groups of 4)
    torch.manual_seed(1)  # the same shuffle
    k_changed = method.keys(changed)
    torch.testing.assert_close(k_changed[0], k[0], rtol=0, atol=1e-6)
    assert not torch.allclose(k_changed[1:4], k[1:4])  # the changed images' own keys do change
    assert not torch.allclose(k_changed[4:], k[4:])  # and those whose key groups they joined
    off = build_method("mocov1", SPEC, **TINY, split_bn=0)  # without the fix: the whole batch leaks in
    assert not torch.allclose(off.keys(changed)[0], off.keys(im_k)[0])
