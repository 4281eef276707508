"""Every kind of data object satisfies the one data contract, `DataSource`, and its subsets do too."""
import pytest
import torch

from selfsup.data.base import DataSource, ImageData
from selfsup.data.egomotion import make_egomotion_pairs
from selfsup.data.interaction import make_interactions
from selfsup.data.pairs import make_pairs
from selfsup.data.sprites import make_sprite_clips
from selfsup.data.text import TextData


def images() -> ImageData:
    g = torch.Generator().manual_seed(0)
    return ImageData(torch.randint(0, 256, (12, 1, 28, 28), generator=g, dtype=torch.uint8), torch.arange(12) % 3,
                     ["a", "b", "c"])


def kinds() -> dict[str, DataSource]:
    data = images()
    return {"image": data,
            "text": TextData.from_texts([f"apple pear {i} fig plum" for i in range(6)], [i % 2 for i in range(6)],
                                        ["a", "b"], seq_len=12, vocab_size=40),
            "video": make_sprite_clips(data.images, data.labels, 4, classes=data.classes, frames=3, canvas=32,
                                       sprite_size=12),
            "egomotion": make_egomotion_pairs(data.images, data.labels, 6, classes=data.classes, canvases=2),
            "interaction": make_interactions(data.images, torch.arange(12) % 10, 6),
            "pairs": make_pairs(data.images, [f"a picture of thing {i}" for i in range(12)], torch.arange(12),
                                labels=data.labels, classes=data.classes).train}


@pytest.mark.parametrize("kind", ["image", "text", "video", "egomotion", "interaction", "pairs"])
def test_every_data_kind_is_a_data_source(kind):
    data = kinds()[kind]
    part = data.subset(torch.tensor([0, 2]), name="part")
    assert isinstance(data, DataSource) and isinstance(part, DataSource)
    assert len(part) == 2 and part.name == "part" and part.classes == data.classes
    assert torch.equal(part.labels, data.labels[torch.tensor([0, 2])]) and part.spec.modality == data.spec.modality
    batch = data.batch(torch.tensor([1, 0]))
    assert isinstance(batch, (torch.Tensor, dict))


def test_a_tensor_is_not_a_data_source():
    assert not isinstance(torch.zeros(3), DataSource)
