"""Colourisation as tracking: exact colour quantisation, pointer attention and colour copying against plain
references, the loss as written in the paper, grey-only input, downstream features made only of trained
parameters, and training that lowers the loss."""
from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest
import torch

from conftest import TINY_OPTIONS, sprite_clips as colour_clips
from selfsup.data.base import DataSpec
from selfsup.data.sprites import PALETTE
from selfsup.errors import SelfSupError
from selfsup.evaluate.finetune import Classifier
from selfsup.methods.base import build_method
from selfsup.methods.tracking_colorization import (copy_colors, pointer_attention, quantize_colors,
                                                   reference_and_target, to_gray)

TINY = TINY_OPTIONS["tracking-colorization"]


def test_quantize_colors_exact_classes() -> None:
    frames = torch.zeros(1, 3, 2, 2)
    frames[0, :, 0, 0] = torch.tensor([0.5, 0.0, 0.0])  # dim red -> red (class 1), brightness does not matter
    frames[0, :, 0, 1] = torch.tensor([0.0, 0.9, 0.9])  # cyan -> class 5
    frames[0, :, 1, 0] = torch.tensor([0.05, 0.05, 0.0])  # darker than the threshold -> background 0
    frames[0, :, 1, 1] = torch.tensor([0.8, 0.1, 0.7])  # nearest hue is magenta -> class 6
    assert quantize_colors(frames, (2, 2), PALETTE).tolist() == [[1, 5, 0, 6]]
    assert torch.equal(PALETTE[4], torch.tensor([0.0, 1.0, 1.0]))


def test_pointer_attention_is_a_softmax_over_reference_pixels() -> None:
    g = torch.Generator().manual_seed(0)
    target, reference = torch.randn(2, 3, 2, 2, generator=g), torch.randn(2, 3, 2, 2, generator=g)
    attention = pointer_attention(target, reference, temperature=0.5)
    for n in range(2):
        for i in range(4):
            f_i = target[n, :, i // 2, i % 2]
            logits = [float(f_i @ reference[n, :, j // 2, j % 2]) / 0.5 for j in range(4)]
            expected = [math.exp(v) / sum(math.exp(u) for u in logits) for v in logits]
            assert attention[n, i].tolist() == pytest.approx(expected, rel=1e-5)


def test_copy_colors_with_a_pointing_attention_copies_exactly() -> None:
    reference_classes = torch.tensor([[0, 3, 2]])
    attention = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0]]])
    predicted = copy_colors(attention, reference_classes, 4)
    assert predicted.tolist() == [[[0, 0, 1, 0], [0, 0, 0, 1], [0.5, 0, 0, 0.5]]]


def test_reference_precedes_target_within_the_gap() -> None:
    torch.manual_seed(0)
    reference, target = reference_and_target(6, 500, 2, torch.device("cpu"))
    assert (reference >= 0).all() and (reference < target).all() and (target - reference <= 2).all()
    assert (target <= 5).all() and set((target - reference).tolist()) == {1, 2}


def test_loss_is_the_cross_entropy_of_copied_colours_and_reaches_only_the_hypercolumn() -> None:
    clips = colour_clips()
    method = build_method("tracking-colorization", clips.spec, **TINY)
    batch = clips.batch(torch.arange(4))
    torch.manual_seed(3)
    loss, metrics = method.loss(batch)
    torch.manual_seed(3)
    predicted, truth, _, _ = method.colorize(batch.float() / 255)
    picked = predicted.gather(-1, truth.unsqueeze(-1)).squeeze(-1)
    assert loss.item() == pytest.approx(-picked.clamp_min(1e-8).log().mean().item(), rel=1e-5)
    loss.backward()
    method.after_step(0.1)
    assert method.encoder.block_names == ["conv1", "conv2"]  # conv3 is not part of the per-pixel embedding
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.encoder.parameters())
    assert 0 <= float(metrics["foreground_acc"]) <= 1


def _pretext_step(method, batch) -> dict[str, torch.Tensor | None]:
    """One training step on the colourisation loss; the gradient each parameter got, by name."""
    opt = torch.optim.Adam(method.trainable_parameters(), lr=1e-2)
    torch.manual_seed(3)
    loss, _ = method.loss(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grads = {name: None if p.grad is None else p.grad.clone() for name, p in method.named_parameters()}
    opt.step()
    return grads


def _trained(grad: torch.Tensor | None) -> bool:
    return grad is not None and bool(grad.abs().sum() > 0)


def test_downstream_features_use_only_parameters_the_pretext_loss_trains() -> None:
    torch.manual_seed(0)
    clips = colour_clips()
    method = build_method("tracking-colorization", clips.spec, **TINY)
    batch = clips.batch(torch.arange(4))
    before = {name: p.detach().clone() for name, p in method.named_parameters()}
    grads = _pretext_step(method, batch)
    # Fine-tuning (selfsup.evaluate's Classifier, default read-out): which encoder parameters its
    # features depend on, by autograd; every one of them got a gradient from the pretext loss and moved.
    classifier = Classifier(method, num_classes=3, upto=None, freeze_upto=None)
    named = dict(classifier.encoder.named_parameters())
    used = torch.autograd.grad(classifier.encoder(classifier.method_input(batch)).square().sum(),
                               list(named.values()), allow_unused=True)
    used = {f"encoder.{name}" for name, g in zip(named, used) if g is not None}
    assert used == {f"encoder.{name}" for name in named}  # no block the read-out skips
    for name in used:
        assert _trained(grads[name]), f"{name} is read downstream but gets no gradient from the pretext loss"
        assert not torch.equal(before[name], dict(method.named_parameters())[name]), name
    # Linear probe and kNN (method.features, default read-out): perturbing every parameter that the pretext
    # loss does not train leaves the features unchanged; perturbing a trained one does not.
    features = method.features(batch)
    assert features.shape == (4, method.feature_dim) == (4, Classifier(method, 3, None, None).head[-1].in_features)
    untrained = [p for name, p in method.named_parameters() if not _trained(grads[name])]
    with torch.no_grad():
        for p in untrained:
            p.add_(torch.randn_like(p))
    assert torch.equal(method.features(batch), features)
    with torch.no_grad():
        method.encoder.blocks["conv2"][0].weight.add_(1.0)
    assert not torch.allclose(method.features(batch), features)


def test_old_checkpoints_with_the_untrained_block_still_load() -> None:
    clips = colour_clips()
    method = build_method("tracking-colorization", clips.spec, **TINY)
    state = method.state_dict()
    state["encoder.blocks.conv3.0.weight"] = torch.zeros(8, 8, 3, 3)  # as saved by the uncut encoder
    state["encoder.blocks.conv3.0.bias"] = torch.zeros(8)
    other = build_method("tracking-colorization", clips.spec, **TINY)
    other.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), method.state_dict().values()))


def test_the_palette_comes_with_the_spec_and_run_records_without_it_still_load() -> None:
    clips = colour_clips()
    method = build_method("tracking-colorization", clips.spec, **TINY)
    assert torch.equal(method.palette, PALETTE) and method.num_colors == 1 + len(PALETTE)
    record = json.loads(json.dumps(asdict(clips.spec)))  # as a run folder's config.json keeps the spec
    assert torch.equal(build_method("tracking-colorization", DataSpec(**record), **TINY).palette, PALETTE)
    del record["palette"]  # a run saved before the spec named the palette
    old = build_method("tracking-colorization", DataSpec(**record), **TINY)
    old.load_state_dict(method.state_dict())
    batch = clips.batch(torch.arange(4))
    assert torch.equal(old.features(batch), method.features(batch))
    with pytest.raises(SelfSupError, match="palette"):
        old.loss(batch)


def test_refuses_an_encoder_without_feature_maps() -> None:
    with pytest.raises(SelfSupError, match="convnet"):
        build_method("tracking-colorization", colour_clips().spec, encoder="vit_tiny", encoder_kwargs={"patch_size": 4})


def test_encoder_sees_grey_only() -> None:
    clips = colour_clips()
    method = build_method("tracking-colorization", clips.spec, **TINY)
    colour = clips.batch(torch.arange(4))
    grey = colour.amax(dim=2, keepdim=True)
    assert torch.equal(method.features(colour), method.features(grey[:, 0]))
    assert torch.equal(to_gray(colour.float()[:, 0]), grey.float()[:, 0])
    assert method.features(colour).shape == (4, method.feature_dim)


def test_training_lowers_the_colourisation_loss() -> None:
    torch.manual_seed(0)
    clips = colour_clips(8)
    method = build_method("tracking-colorization", clips.spec, **TINY)
    batch = clips.batch(torch.arange(8))
    opt = torch.optim.Adam(method.parameters(), lr=1e-2)
    losses = []
    for step in range(40):
        torch.manual_seed(step % 2)  # two fixed (reference, target) draws, so the loss can be compared
        loss, _ = method.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-2] < 0.7 * losses[0] and losses[-1] < 0.7 * losses[1]
    examples = method.examples(batch)
    assert examples["predicted_colors"].shape == (8, 3, 16, 16)
    assert examples["attention_of_brightest_cell"].max() == 1
