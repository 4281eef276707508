"""Physical interaction: the simulated table is deterministic, its recorded outcomes are the physics engine's
state (and obey sliding friction), renders match the simulated shapes, the pretext labels come only from the
simulator's outcome, and the method trains its shared trunk."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from conftest import TINY_OPTIONS, noise_images, pokes
from selfsup.data import DATASETS
from selfsup.data.interaction import (DT, GRAVITY, MATERIALS, MOVED_PIXELS, SHAPES, TABLE, Objects, area,
                                      cached_interactions, draw_actions, draw_objects, make_interactions,
                                      property_views, render, simulate)
from selfsup.errors import SelfSupError
from selfsup.methods.base import build_method
from selfsup.methods.physical_interaction import contact_patches, outcome_labels

TINY = TINY_OPTIONS["physical-interaction"]
TEXTURES, TEXTURE_LABELS = noise_images(20), torch.arange(20) % 10


@pytest.fixture(scope="module")
def data():
    return pokes(96, seed=0)


def test_simulation_is_deterministic_for_a_seed(data) -> None:
    again, other = pokes(96, seed=0, chunk=40), pokes(96, seed=1)  # another chunking: the same pokes
    for field in ("before", "after", "action", "outcome", "properties", "centre"):
        assert torch.equal(getattr(data, field), getattr(again, field)), field
    assert not torch.equal(data.outcome, other.outcome) and not torch.equal(data.before, other.before)
    assert 0.1 < data.moved.float().mean() < 0.9  # some pokes move their object, some do not


def test_recorded_outcome_is_the_physics_engine_state(data) -> None:
    # Replay the draws of make_interactions(seed=0) and read the engine's bodies after the simulation.
    g = torch.Generator().manual_seed(0)
    objects = draw_objects(TEXTURES, TEXTURE_LABELS, 96, g)
    angle, offset, force = draw_actions(96, g)
    contact, bodies = simulate(objects, angle, offset, force)
    state = torch.tensor([[b.position.x, b.position.y, b.angle] for b in bodies], dtype=torch.float64)
    start = torch.cat([objects.position, objects.angle[:, None]], dim=1)
    assert torch.equal(data.outcome, (state - start).float())
    assert torch.equal(data.action, torch.cat([contact, angle[:, None], force[:, None]], 1).float())


def test_a_push_through_the_centre_slides_as_coulomb_friction_says() -> None:
    # A circle pushed through its centre with impulse J: v0 = J/m, decelerates at mu*g, stops after
    # v0^2 / (2 mu g), and does not turn.
    mass, mu = 200.0, MATERIALS[1][1]
    objects = Objects(torch.tensor([0]), torch.tensor([1]), torch.tensor([8.0], dtype=torch.float64),
                      torch.tensor([mass], dtype=torch.float64), torch.tensor([[32.0, 32.0]], dtype=torch.float64),
                      torch.tensor([0.0], dtype=torch.float64), TEXTURES[:1])
    impulse = 2000.0
    contact, (body,) = simulate(objects, torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([impulse]))
    assert contact[0].tolist() == pytest.approx([24.0, 32.0])  # the left edge of the circle, pushed rightwards
    v0 = impulse / mass
    assert body.position.x - 32 == pytest.approx(v0 ** 2 / (2 * mu * GRAVITY), abs=v0 * DT)  # Euler steps
    assert body.position.y == pytest.approx(32.0, abs=1e-9) and body.angle == pytest.approx(0.0, abs=1e-9)


def test_renders_show_the_simulated_shape_at_its_pose() -> None:
    g = torch.Generator().manual_seed(5)
    objects = draw_objects(TEXTURES, TEXTURE_LABELS, 200, g)
    images = render(objects, objects.position, objects.angle, supersample=1)  # a pixel shows its centre's point
    painted = (images[:, 0] > TABLE).sum(dim=(1, 2)).float()  # textures are drawn in [70, 250] grey
    expected = area(objects.shape, objects.size.float())
    assert ((painted - expected).abs() / expected).max() < 0.15  # pixel edges at 5-9 pixel sizes
    images = render(objects, objects.position, objects.angle)
    # Moving the object 3 pixels right and 2 up moves its picture by as much (but for float rounding at edges).
    moved = render(objects, objects.position + torch.tensor([3.0, -2.0], dtype=torch.float64), objects.angle)
    assert (moved[:, :, :-2, 3:] != images[:, :, 2:, :-3]).float().mean() < 1e-3
    assert (moved != images).float().mean() > 0.01


def test_pretext_batches_never_see_the_object_properties(data) -> None:
    index = torch.arange(0, 96, 3)
    scrambled = replace(data, properties=data.properties[torch.randperm(96)], labels=torch.zeros(96, dtype=torch.long))
    zeroed = replace(data, properties=torch.zeros_like(data.properties), labels=None)
    batch = data.batch(index)
    assert set(batch) == {"before", "after", "action", "outcome"}
    for other in (scrambled, zeroed):
        assert all(torch.equal(batch[k], v) for k, v in other.batch(index).items())
    torch.manual_seed(0)
    method = build_method("physical-interaction", data.spec, **TINY)
    loss, _ = method.loss(batch)
    loss_scrambled, _ = method.loss(scrambled.batch(index))
    assert torch.equal(loss, loss_scrambled)


def test_outcome_labels_are_exact_bins_of_the_measured_outcome() -> None:
    method = build_method("physical-interaction", pokes(4).spec, **TINY)
    outcome = torch.tensor([[0.5, 0.0, 0.0], [0.0, -2.0, math.radians(-20)], [3.0, 4.0, math.radians(4)],
                            [0.0, 0.0, math.radians(-5)], [9.0, 0.0, math.radians(16)]])
    labels = outcome_labels(outcome, method.config)
    assert labels["moved"].tolist() == [0, 1, 1, 1, 1]
    assert labels["distance"].tolist() == [0, 1, 2, 0, 3]  # edges 1, 3, 8 pixels
    assert labels["rotation"].tolist() == [2, 0, 3, 1, 4]  # edges -15, -3, 3, 15 degrees
    assert torch.equal(outcome_labels(pokes(64).outcome, method.config)["moved"], pokes(64).moved.long())


def test_contact_patch_is_centred_on_the_contact_point() -> None:
    images = torch.zeros(2, 1, 64, 64, dtype=torch.uint8)
    images[0, 0, 20, 10] = 255  # row (y) 20, column (x) 10
    images[1, 0, 0, 63] = 200
    action = torch.tensor([[10.3, 20.7, 0.0, 1.0], [63.5, 0.2, 0.0, 1.0]])
    patches = contact_patches(images, action, 32)
    assert patches.shape == (2, 1, 32, 32)
    assert patches[0, 0, 16, 16] == 255 and patches[0].sum() == 255
    assert patches[1, 0, 16, 16] == 200 and patches[1, 0, :16].sum() == 0  # zero padding beyond the border


def test_property_views_are_object_centred_and_labelled_by_the_property(data) -> None:
    for column, prop in enumerate(("shape", "mass", "material")):
        views = property_views(data, prop)
        assert torch.equal(views.labels, data.properties[:, column]) and views.images.shape == (96, 1, 32, 32)
    centre = data.centre.floor().long()  # the pixel holding the object's centre
    rows = torch.arange(96)
    shapes = property_views(data, "shape")
    assert torch.equal(shapes.images[:, 0, 16, 16], data.before[rows, 0, centre[:, 1], centre[:, 0]])
    assert shapes.classes == list(SHAPES)
    with pytest.raises(SelfSupError, match="colour"):
        property_views(data, "colour")


def test_method_trains_and_gradients_reach_the_trunk(data) -> None:
    torch.manual_seed(0)
    method = build_method("physical-interaction", data.spec, **TINY)
    batch = data.batch(torch.arange(64))
    loss, metrics = method.loss(batch)
    loss.backward()
    for name, p in method.encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert set(metrics) >= {"moved_acc", "distance_acc", "rotation_acc"}
    opt = torch.optim.Adam(method.trainable_parameters(), lr=3e-3)
    first = loss.item()
    for _ in range(60):
        loss, _ = method.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first
    shown = method.examples(batch)
    assert shown["before+push"].shape == (8, 3, 64, 64) and shown["contact patch"].shape == (8, 1, 32, 32)
    tip = batch["action"][0, :2].floor().long()
    assert shown["before+push"][0, :, tip[1], tip[0]].tolist() == [1.0, 0.0, 0.0]  # the arrow's tip, red
    features = method.features(property_views(data, "shape").images[:4])
    assert features.shape == (4, method.feature_dim)


def test_registered_source_cache_reads_back_the_same_pokes(tmp_path) -> None:
    assert "interaction" in DATASETS.names()
    first = cached_interactions(TEXTURES, TEXTURE_LABELS, 12, 3, "t", cache_dir=tmp_path)
    written = list(tmp_path.glob("t-*.npz"))
    assert len(written) == 1 and not list(tmp_path.glob(".*tmp"))
    again = cached_interactions(TEXTURES, TEXTURE_LABELS, 12, 3, "t", cache_dir=tmp_path)
    assert again.before.dtype == torch.uint8 and torch.equal(first.before, again.before)
    assert torch.equal(first.outcome, again.outcome) and torch.equal(first.properties, again.properties)


def test_bad_textures_are_a_clear_error() -> None:
    with pytest.raises(SelfSupError, match="uint8"):
        make_interactions(TEXTURES.float(), TEXTURE_LABELS, 4)
    with pytest.raises(SelfSupError, match="class"):
        make_interactions(TEXTURES, torch.zeros(20, dtype=torch.long), 4)
    with pytest.raises(SelfSupError, match="at least 1"):
        make_interactions(TEXTURES, TEXTURE_LABELS, 0)
    assert MOVED_PIXELS > 0
