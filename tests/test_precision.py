"""Mixed precision (`--precision bf16-mixed`): every image method trains under bfloat16 autocast, and the
losses whose numerics need it (temperature-scaled logits, Sinkhorn, batch statistics) compute in float32.
CPU autocast supports bfloat16, so all of this runs here; no test touches a GPU."""
from __future__ import annotations

from copy import deepcopy

import pytest
import torch

from conftest import TINY_BN, TINY_OPTIONS, synthetic_images, tiny_stand_in
from selfsup.losses.clustering import sinkhorn_knopp
from selfsup.losses.contrastive import info_nce, nt_xent
from selfsup.losses.distillation import dino_loss
from selfsup.losses.momentum_contrast import scaled_info_nce
from selfsup.losses.nearest_neighbour import nnclr_loss
from selfsup.losses.precision import float32
from selfsup.losses.redundancy import barlow_twins_loss, vicreg_loss
from selfsup.methods.base import METHODS, build_method
from selfsup.nets import build_encoder
from selfsup.nets.base import choose_memory_layout
from selfsup.nets.momentum import ema_update
from selfsup.train import TrainConfig, compile_encoder, pretrain, resident_copy

IMAGE_METHODS = [name for name in METHODS.names() if METHODS.get(name).modality in ("image", "video")]


def bf16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def pair(n: int = 32, d: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g)
    return z1, z1 + 0.3 * torch.randn(n, d, generator=g)


SENSITIVE = {
    "nt_xent": lambda a, b: nt_xent(a, b, temperature=0.1),
    "info_nce": lambda a, b: info_nce(a, b, temperature=0.07),
    "info_nce_queue": lambda a, b: info_nce(a, b, negatives=a.roll(1, 0) * 2, temperature=0.07),
    "scaled_info_nce": lambda a, b: scaled_info_nce(a, b, temperature=0.2),
    "nnclr": lambda a, b: nnclr_loss(a, b, temperature=0.1),
    "barlow_twins": lambda a, b: barlow_twins_loss(a, b),
    "vicreg": lambda a, b: vicreg_loss(a, b),
    "sinkhorn": lambda a, b: sinkhorn_knopp(torch.tanh(a), 0.05, 3),  # scores in [-1, 1], like cosines
    "dino": lambda a, b: dino_loss([a, b, a.flip(0)], [b, a], torch.zeros(1, a.shape[1]), 0.1, 0.04),
}


@pytest.mark.parametrize("name", sorted(SENSITIVE))
def test_sensitive_loss_under_autocast_equals_its_float32_value(name):
    z1, z2 = pair()
    exact = SENSITIVE[name](z1, z2)
    with bf16_autocast():
        mixed = SENSITIVE[name](z1, z2)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, exact, rtol=1e-5, atol=1e-6)


def test_without_the_float32_island_autocast_would_change_the_loss():
    """The check above can fail: NT-Xent's logits computed in bfloat16 move the loss well beyond its tolerance."""
    z1, z2 = pair()
    with bf16_autocast():
        mixed = nt_xent.__wrapped__(z1, z2, temperature=0.1)
    exact = nt_xent(z1, z2, temperature=0.1)
    assert (mixed.float() - exact).abs() / exact > 1e-3  # 100x the tolerance the float32 islands meet


def test_float32_casts_bfloat16_arguments_and_keeps_the_rest():
    seen = {}

    @float32
    def probe(x, xs, n, *, y):
        seen.update(x=x.dtype, xs=[t.dtype for t in xs], n=n, y=y.dtype, mm=(x @ x).dtype)
        return x

    probe(torch.ones(2, 2, dtype=torch.bfloat16), [torch.ones(1, dtype=torch.float16)], 3,
          y=torch.ones(1, dtype=torch.long))
    assert seen == {"x": torch.float32, "xs": [torch.float32], "n": 3, "y": torch.long, "mm": torch.float32}
    with bf16_autocast():  # autocast is off inside: a matrix product of float32 stays float32
        probe(torch.ones(2, 2), [], 0, y=torch.ones(1))
    assert seen["mm"] == torch.float32


def test_ema_update_under_autocast_is_the_float32_update():
    online, target = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    expected = [t.detach().clone().mul_(0.99).add_(o.detach(), alpha=0.01)
                for t, o in zip(target.parameters(), online.parameters())]
    with bf16_autocast():
        ema_update(target, online, 0.99)
    for got, want in zip(target.parameters(), expected):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.detach(), want, rtol=0, atol=0)


@pytest.mark.parametrize("name", IMAGE_METHODS)
def test_one_training_step_of_every_image_method_under_bf16_autocast(name):
    torch.manual_seed(0)
    data = tiny_stand_in(METHODS.get(name).default_data)
    method = build_method(name, data.spec, **deepcopy(TINY_OPTIONS[name])).train()
    batch = data.batch(torch.arange(8))
    for phase in method.phases or ("main",):
        params = list(method.trainable_parameters() if method.phases is None else method.phase_parameters(phase))
        optimizer = torch.optim.Adam(params, lr=1e-3)
        with bf16_autocast():
            loss, metrics = method.loss(batch) if method.phases is None else method.phase_loss(batch, phase)
        assert loss.dim() == 0 and torch.isfinite(loss) and loss.dtype == torch.float32, f"{name} {phase}: {loss}"
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        assert any(p.grad is not None for p in params)
        optimizer.step()
        # fp32 master weights. (Their values are not checked: oneDNN's CPU bf16 conv weight gradient on 1x1
        # maps is now and then NaN, see nets.base.choose_memory_layout; GPUs are not affected.)
        assert all(p.dtype == torch.float32 for p in params)
    method.after_step(0.5)


def test_pretrain_with_bf16_mixed_precision_on_the_cpu(tmp_path):
    data = synthetic_images(n=128)
    method = build_method("simclr", data.spec, **deepcopy(TINY_BN))
    result = pretrain(method, data, TrainConfig(epochs=1, batch_size=32, precision="bf16-mixed", progress_bar=False,
                                                knn_every=0), tmp_path / "run")
    assert torch.isfinite(torch.tensor(result.final["train/loss_epoch"]))
    assert all(p.dtype == torch.float32 for p in method.parameters())  # fp32 master weights


def conv_weight_layouts(model: torch.nn.Module) -> set[bool]:
    return {m.weight.is_contiguous(memory_format=torch.channels_last) and not m.weight.is_contiguous()
            for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1 and m.kernel_size != (1, 1)}


def test_memory_layout_channels_last_on_gpus_and_as_built_on_cpu():
    convnet, resnet = build_encoder("convnet", in_channels=1), build_encoder("resnet18", in_channels=1)
    assert convnet.channels_last and not resnet.channels_last  # as built: channels-last pays on CPU for the ConvNet
    choose_memory_layout(resnet, "cpu")
    assert conv_weight_layouts(resnet) == {False}
    x = torch.rand(2, 1, 28, 28)
    before = resnet.eval()(x)
    choose_memory_layout(resnet, "cuda")  # only the layout changes: no GPU needed
    assert resnet.channels_last and conv_weight_layouts(resnet) == {True}
    torch.testing.assert_close(resnet(x), before)  # the layout never changes the values
    convnet.use_channels_last(False)
    assert not convnet.channels_last and conv_weight_layouts(convnet) == {False}


def test_resident_copy_only_when_the_images_take_a_quarter_of_free_memory():
    data = synthetic_images(n=64)  # 64 x 784 bytes
    assert resident_copy(data, torch.device("cpu"), free_bytes=4 * 64 * 784 - 4) is None
    copy = resident_copy(data, torch.device("cpu"), free_bytes=4 * 64 * 784)
    assert torch.equal(copy.batch(torch.tensor([3, 1])), data.batch(torch.tensor([3, 1]))) and copy.labels is None
    assert resident_copy(object(), torch.device("cpu"), free_bytes=10**12) is None  # not in-memory images


def test_compile_falls_back_to_eager_with_a_warning(monkeypatch):
    method = build_method("rotation", synthetic_images(8).spec, encoder_kwargs={"widths": (8, 8, 8)})

    def unavailable(self, *args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch.nn.Module, "compile", unavailable)
    with pytest.warns(UserWarning, match="no compiler here.*eagerly"):
        assert compile_encoder(method) is False
    loss, _ = method.loss(synthetic_images(8).batch(torch.arange(8)))
    assert torch.isfinite(loss)
