import torch

from selfsup.data.base import DataSpec
from selfsup.methods import build_method
from selfsup.views import four_rotations
from conftest import TINY


def test_rotation_pseudo_labels_match_rot90_exactly():
    x = torch.randint(0, 256, (5, 2, 7, 7), dtype=torch.uint8)
    rotated, labels = four_rotations(x)
    assert rotated.shape == (20, 2, 7, 7) and labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    for i in range(20):
        assert torch.equal(rotated[i], torch.rot90(x[i % 5], int(labels[i]), dims=(1, 2)))


def test_every_image_appears_in_all_four_rotations_in_the_batch():
    x = torch.arange(2 * 9, dtype=torch.float32).reshape(2, 1, 3, 3)
    rotated, labels = four_rotations(x)
    for i in range(2):
        seen = {int(labels[j]) for j in range(8) if torch.equal(torch.rot90(rotated[j], -int(labels[j]), (1, 2)), x[i])}
        assert seen == {0, 1, 2, 3}


def test_rotation_loss_is_cross_entropy_over_four_classes_and_learns(tiny_data):
    torch.manual_seed(0)
    m = build_method("rotation", DataSpec(channels=1, height=28, width=28), **TINY)
    batch = tiny_data.images[:32]
    loss, metrics = m.loss(batch)
    images, labels = four_rotations(batch.float() / 255)
    reference = torch.nn.functional.cross_entropy(m.head(m.encoder(images)), labels)
    assert torch.allclose(loss, reference)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = loss.item()
    for _ in range(60):
        loss, metrics = m.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first and metrics["pretext_acc"] > 0.8


def test_examples_show_true_and_predicted_angles(tiny_data):
    m = build_method("rotation", tiny_data.spec, **TINY)
    ex = m.examples(tiny_data.images[:8])
    assert ex["rotated"].shape == (16, 1, 28, 28)
    assert ex["true_deg"].tolist() == [0] * 4 + [90] * 4 + [180] * 4 + [270] * 4
    assert set(ex["pred_deg"].tolist()) <= {0, 90, 180, 270}
