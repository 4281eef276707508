"""The method contract (methods/base/), checked for every registered method on tiny data of its kind.

One test per method follows the pipeline: build it with its tiny options (conftest.TINY_OPTIONS) for a
tiny stand-in of its default dataset; train it as the trainer does (finite losses and metrics; the encoder
is trained, and every parameter an optimizer steps gets a gradient); evaluate (`features` is
(N, feature_dim)); show (what `examples` draws as images lies in [0, 1]); save a run folder and load it
back the way `selfsup pretrain` and `load_run` do (config.json + safetensors, no pickle): the same features.
Method-specific behaviour (reference values, pseudo-labels, stopped gradients) stays in each method's tests.
"""
from __future__ import annotations

from copy import deepcopy
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from conftest import TINY_OPTIONS, tiny_stand_in
from selfsup.api import load_run
from selfsup.methods.base import METHODS, Method, build_method
from selfsup.runs import RunFolder, save_weights

NAMES = METHODS.names()
BATCH = 8

# Parameters a method leaves untrained by design: methods that see single texts never use the text
# encoder's segment (token type) embedding, which the sentence-pair methods train.
UNTRAINED = {"clm": {"encoder.blocks.embed.token_type.weight"}, "mlm": {"encoder.blocks.embed.token_type.weight"}}
# Encoder parameters a method freezes by design (no optimizer steps them): MoCo v3's random patch projection.
FROZEN = {"mocov3": {"encoder.blocks.patch_embed.proj.weight", "encoder.blocks.patch_embed.proj.bias"}}


def tiny_method(name: str) -> tuple[Method, object]:
    """The method built with its tiny options for a tiny stand-in of its default data, and a raw batch."""
    torch.manual_seed(0)
    data = tiny_stand_in(METHODS.get(name).default_data)
    method = build_method(name, data.spec, **deepcopy(TINY_OPTIONS[name]))  # the config keeps the dicts it is given
    return method, data.batch(torch.arange(BATCH))


def phase_loss(method: Method, batch, phase: str) -> tuple[torch.Tensor, dict]:
    """What the trainer minimises in `phase`: the method's one `loss`, or a player's `phase_loss`."""
    return method.loss(batch) if method.phases is None else method.phase_loss(batch, phase)


def assert_finite(phase: str, loss: torch.Tensor, metrics: dict) -> None:
    assert loss.dim() == 0 and torch.isfinite(loss), f"{phase}: loss {loss}"
    for key, value in metrics.items():
        assert torch.isfinite(torch.as_tensor(value)).all(), f"{phase}: metric {key} = {value}"
        if key.endswith("acc"):
            assert 0 <= float(value) <= 1, f"{phase}: accuracy {key} = {value}"


def stepped_parameters(method: Method, phase: str) -> dict[str, torch.nn.Parameter]:
    """By name, what the trainer's optimizer for `phase` steps."""
    chosen = {id(p) for p in (method.trainable_parameters() if method.phases is None
                              else method.phase_parameters(phase))}
    return {key: p for key, p in method.named_parameters() if id(p) in chosen}


def assert_training_trains_every_parameter(method: Method, batch, most_steps: int = 2) -> None:
    """Train as the trainer does (an optimizer per phase, stepped in order, then `after_step`): every loss is
    finite, the encoder is among what the optimizers step, and each parameter that an optimizer steps (but
    those in UNTRAINED) gets a non-zero gradient from its phase's loss.

    A second step only when the first left some parameter without one: a zero-initialised output layer
    passes no gradient back at the very first step (super-resolution's residual decoder starts as plain
    bilinear upsampling).
    """
    phases = method.phases or ("main",)
    stepped = {phase: stepped_parameters(method, phase) for phase in phases}
    optimizers = [torch.optim.Adam(list(stepped[phase].values()), lr=1e-3) for phase in phases]
    every = set().union(*stepped.values())
    trained = {id(p) for parameters in stepped.values() for p in parameters.values()}
    untrained_encoder = {key for key, p in method.encoder.named_parameters(prefix="encoder") if id(p) not in trained}
    assert untrained_encoder == FROZEN.get(method.name, set()), f"no optimizer steps {sorted(untrained_encoder)}"
    expected = every - UNTRAINED.get(method.name, set())
    reached: set[str] = set()
    for step in range(most_steps):
        for phase, optimizer in zip(phases, optimizers):
            method.zero_grad(set_to_none=True)
            loss, metrics = phase_loss(method, batch, phase)
            assert_finite(phase, loss, metrics)
            loss.backward()
            reached |= {key for key, p in stepped[phase].items() if p.grad is not None and p.grad.abs().sum() > 0}
            optimizer.step()
        method.after_step((step + 1) / most_steps)
        if reached >= expected:
            break
    assert reached == expected, f"the loss trains {sorted(reached - expected)} and not {sorted(expected - reached)}"


def assert_features_have_the_promised_shape(method: Method, batch) -> None:
    features = method.features(batch)
    assert features.shape == (BATCH, method.feature_dim), f"{tuple(features.shape)}, feature_dim {method.feature_dim}"
    assert torch.isfinite(features).all()


def is_image(value: object) -> bool:
    """What the report draws as a row of pictures (report.plots.plot_examples): 4-D tensors (N, C, H, W)."""
    return isinstance(value, torch.Tensor) and value.dim() == 4


def assert_examples_show_images_in_the_unit_range(method: Method, batch) -> None:
    with torch.no_grad():  # as the report calls it
        examples = method.examples(batch)
    assert examples, "examples show nothing"
    for key, value in examples.items():
        assert isinstance(value, (torch.Tensor, str, list)), f"example {key} is a {type(value).__name__}"
        if is_image(value):
            assert value.is_floating_point(), f"example {key} is {value.dtype}"
            assert 0 <= value.min() and value.max() <= 1, f"example {key} spans [{value.min()}, {value.max()}]"


def save_run(method: Method, path: Path) -> None:
    """What pretraining leaves in a run folder for `load_run`: config.json (method, options, spec) and weights."""
    run = RunFolder(path)
    run.path.mkdir(parents=True)
    run.write_config({"method": method.name, "method_config": asdict(method.config), "spec": asdict(method.spec)})
    save_weights(method, run.weights)


def assert_a_saved_and_loaded_run_gives_the_same_features(method: Method, batch, path: Path) -> None:
    save_run(method, path)
    torch.manual_seed(1)  # the reloaded method starts from other random weights
    loaded = load_run(path)
    assert type(loaded) is type(method) and not loaded.training
    assert torch.equal(loaded.features(batch), method.features(batch))


def test_every_registered_method_has_tiny_options() -> None:
    assert sorted(TINY_OPTIONS) == NAMES


@pytest.mark.usefixtures("cache_in_tmp")  # jigsaw's permutation sets
@pytest.mark.parametrize("name", NAMES)
def test_method_keeps_the_contract(name: str, tmp_path: Path) -> None:
    method, batch = tiny_method(name)
    assert_training_trains_every_parameter(method, batch)  # moves weights and buffers too (BatchNorm, queues)
    method.eval()  # evaluation, the report and a reloaded run all see the method in evaluation mode
    assert_features_have_the_promised_shape(method, batch)
    assert_examples_show_images_in_the_unit_range(method, batch)
    assert_a_saved_and_loaded_run_gives_the_same_features(method, batch, tmp_path / "run")
