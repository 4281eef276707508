"""DINO: the loss against a plain computation of the paper's formula, the centre update, the stopped teacher
gradient, the EMA teacher, the temperature warm-up, the frozen last layer, and local crops to the student only."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import GRAY_SPEC as SPEC, TINY_OPTIONS, noise_images
from selfsup.errors import SelfSupError
from selfsup.losses.distillation import dino_loss, updated_center
from selfsup.methods.base import build_method
from selfsup.nets.momentum import cosine_tau


def reference_dino_loss(student: list[list[list[float]]], teacher: list[list[list[float]]], center: list[float],
                        t_s: float, t_t: float) -> float:
    """The paper's Algorithm 1 with plain Python numbers: H(P_t(global i), P_s(crop v)) for v != i."""
    def softmax(row: list[float], t: float) -> list[float]:
        e = [math.exp(x / t) for x in row]
        return [x / sum(e) for x in e]

    terms = []
    for i, t_crop in enumerate(teacher):
        for v, s_crop in enumerate(student):
            if v == i:
                continue
            per_image = []
            for t_row, s_row in zip(t_crop, s_crop):
                q = softmax([x - c for x, c in zip(t_row, center)], t_t)
                p = softmax(s_row, t_s)
                per_image.append(-sum(qk * math.log(pk) for qk, pk in zip(q, p)))
            terms.append(sum(per_image) / len(per_image))
    return sum(terms) / len(terms)


def test_loss_is_the_cross_entropy_over_pairs_of_different_crops() -> None:
    g = torch.Generator().manual_seed(0)
    student = [torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(4)]  # 2 global + 2 local
    teacher = [torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(2)]
    center = torch.randn(1, 5, generator=g, dtype=torch.float64)
    loss = dino_loss(student, teacher, center, student_temperature=0.1, teacher_temperature=0.04)
    expected = reference_dino_loss([s.tolist() for s in student], [t.tolist() for t in teacher], center[0].tolist(),
                                   0.1, 0.04)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_no_gradient_reaches_the_teacher_outputs_and_the_student_gets_one() -> None:
    student = [torch.randn(4, 6, requires_grad=True) for _ in range(3)]
    teacher = [torch.randn(4, 6, requires_grad=True) for _ in range(2)]
    dino_loss(student, teacher, torch.zeros(1, 6)).backward()
    assert all(t.grad is None for t in teacher)
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in student)


def test_center_update_is_the_ema_of_the_batch_mean() -> None:
    center = torch.tensor([[1.0, 2.0]])
    teacher = torch.tensor([[0.0, 4.0], [2.0, 0.0], [4.0, 2.0]])  # mean (2, 2)
    torch.testing.assert_close(updated_center(center, teacher, 0.9), torch.tensor([[1.1, 2.0]]))


def tiny_dino(**changes):
    torch.manual_seed(0)
    return build_method("dino", SPEC, **{**TINY_OPTIONS["dino"], **changes})


def test_the_method_updates_its_center_from_the_teacher_outputs_of_the_batch_when_training() -> None:
    method = tiny_dino()
    crops = method.make_crops(noise_images(6))
    before = method.center.clone()
    teacher = torch.cat(method.teacher(crops[:2]))
    method.loss_from_crops(crops)
    torch.testing.assert_close(method.center, 0.9 * before + 0.1 * teacher.mean(0, keepdim=True))
    method.eval()
    after_training = method.center.clone()
    method.loss_from_crops(crops)
    assert torch.equal(method.center, after_training)  # evaluation leaves it alone


def test_teacher_gets_no_gradient_and_sees_only_the_global_crops() -> None:
    method = tiny_dino(local_crops=3)
    seen = []
    method.teacher_encoder.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    loss, _ = method.loss(noise_images(4))
    loss.backward()
    assert seen == [(8, 1, 28, 28)]  # the 2 global crops of 4 images, in one pass; no 12 px local crop
    assert all(p.grad is None and not p.requires_grad for p in method.teacher_encoder.parameters())
    assert all(p.grad is None for p in method.teacher_head.parameters())
    assert method.encoder.blocks["conv1"][0].weight.grad.abs().sum() > 0


def test_after_step_moves_the_teacher_by_the_cosine_ema() -> None:
    method = tiny_dino()
    with torch.no_grad():
        for p in method.head.parameters():
            p.add_(1.0)  # the student moved away from the teacher
    student = [p.clone() for p in method.head.parameters()]
    teacher = [p.clone() for p in method.teacher_head.parameters()]
    method.after_step(0.25)
    tau = cosine_tau(0.996, 0.25)
    for t_new, t_old, s in zip(method.teacher_head.parameters(), teacher, student):
        torch.testing.assert_close(t_new, tau * t_old + (1 - tau) * s)
    assert method.momentum == tau and int(method.steps_done) == 1


def test_teacher_temperature_warms_up_linearly_then_stays() -> None:
    method = tiny_dino()
    temperatures = []
    for progress in (0.0, 0.15, 0.3, 0.9):
        method.progress.fill_(progress)
        temperatures.append(method.teacher_temperature())
    assert temperatures == pytest.approx([0.04, 0.055, 0.07, 0.07])


def test_head_last_layer_has_unit_rows_and_is_frozen_for_the_first_steps() -> None:
    method = tiny_dino(freeze_last_layer_steps=1)
    x = torch.randn(5, method.encoder.feature_dim())
    bottleneck = torch.nn.functional.normalize(method.head.mlp(x), dim=1)
    unit_rows = torch.nn.functional.normalize(method.head.last_layer.weight, dim=1)
    torch.testing.assert_close(method.head(x), bottleneck @ unit_rows.T)

    def last_layer_grad() -> torch.Tensor | None:
        method.zero_grad(set_to_none=True)
        method.loss(noise_images(4))[0].backward()
        return method.head.last_layer.weight.grad

    assert last_layer_grad() is None  # step 0 of 1 frozen step
    method.after_step(0.1)
    assert last_layer_grad().abs().sum() > 0


def test_local_features_pool_to_the_global_grid_and_vit_needs_full_size_crops() -> None:
    method = tiny_dino()
    local = torch.rand(3, 1, 12, 12)
    feature_map, _ = method.encoder.feature_map(local)  # (3, 8, 1, 1): repeated over the 2x2 grid
    expected = feature_map.expand(-1, -1, 2, 2).flatten(1)
    torch.testing.assert_close(method.crop_features([local])[0], expected)
    vit = {"encoder": "vit_tiny", "encoder_kwargs": {"dim": 16, "depth": 1, "heads": 2}}
    with pytest.raises(SelfSupError, match="local_size=28"):
        tiny_dino(**vit)
    assert tiny_dino(**vit, local_size=28).loss(noise_images(2))[0].isfinite()
