import itertools

import numpy as np
import pytest
import torch

from conftest import TINY, fit_batch
from selfsup.data.base import DataSpec
from selfsup.methods import jigsaw
from selfsup.methods.base import build_method
from selfsup.views.patches import crop_patches, jigsaw_positions, normalize_each

pytestmark = pytest.mark.usefixtures("cache_in_tmp")


def reference_greedy(items: int, size: int, first: int) -> list[tuple[int, ...]]:
    """Algorithm 1 written plainly: recompute every candidate's summed distance to the chosen set."""
    candidates = list(itertools.permutations(range(items)))
    chosen = [candidates[first]]
    while len(chosen) < size:
        def score(p):
            return sum(sum(a != b for a, b in zip(p, q)) for q in chosen)
        best = max((c for c in candidates if c not in chosen), key=lambda c: (score(c), -candidates.index(c)))
        chosen.append(best)
    return chosen


def test_greedy_permutations_match_plain_algorithm():
    for size in (2, 6, 24):
        got = jigsaw.greedy_hamming_permutations(4, size, seed=3)
        first = list(itertools.permutations(range(4))).index(tuple(got[0]))
        assert [tuple(p) for p in got] == reference_greedy(4, size, first)
    two = jigsaw.greedy_hamming_permutations(4, 2, seed=0)
    assert (two[0] != two[1]).all()  # the second pick differs from the first in every position


def test_permutation_set_is_cached_atomically(tmp_path, monkeypatch):
    perms = jigsaw.permutation_set(10, seed=1, cache_dir=tmp_path)
    assert perms.shape == (10, 9) and len({tuple(p) for p in perms}) == 10
    assert (np.sort(perms, axis=1) == np.arange(9)).all()  # each row is a permutation of 0..8
    assert [p.name for p in tmp_path.iterdir()] == ["jigsaw_permutations_10_seed1.npy"]  # no .part left
    monkeypatch.setattr(jigsaw, "greedy_hamming_permutations", lambda *a: pytest.fail("recomputed"))
    assert (jigsaw.permutation_set(10, seed=1, cache_dir=tmp_path) == perms).all()


def test_crop_patches_equals_slicing():
    images = torch.rand(3, 2, 12, 12)
    tops = torch.tensor([[0, 5], [3, 7], [1, 1]])
    lefts = torch.tensor([[7, 0], [2, 2], [4, 0]])
    crops = crop_patches(images, tops, lefts, 5)
    for n in range(3):
        for k in range(2):
            t, l = tops[n, k].item(), lefts[n, k].item()
            assert torch.equal(crops[n, k], images[n, :, t:t + 5, l:l + 5])


def test_jigsaw_tiles_stay_in_their_cells():
    tops, lefts = jigsaw_positions(500, 28, cell=9, tile=7, generator=torch.Generator().manual_seed(0))
    for k in range(9):
        row, col = divmod(k, 3)
        # the tile lies inside cell (row, col) of a 27-pixel grid whose origin is at most 1 pixel in
        dt = tops[:, k] - 9 * row
        dl = lefts[:, k] - 9 * col
        assert dt.min() >= 0 and dt.max() <= 1 + 2 and dl.min() >= 0 and dl.max() <= 1 + 2
    assert (tops + 7 <= 28).all() and (lefts + 7 <= 28).all()
    gaps = tops[:, 3] - (tops[:, 0] + 7)  # vertical gap between tile 0 and tile 3 varies
    assert gaps.unique().numel() > 1 and gaps.min() >= 0


def test_shuffle_is_undone_by_its_index():
    perms = torch.from_numpy(jigsaw.permutation_set(10, seed=0))
    tiles = torch.arange(4 * 9).view(4, 9, 1, 1, 1).float()
    labels = torch.tensor([0, 3, 9, 3])
    shuffled = jigsaw.shuffle_tiles(tiles, perms, labels)
    for n in range(4):
        for i in range(9):  # position i shows tile perms[label][i]
            assert shuffled[n, i].item() == tiles[n, perms[labels[n], i]].item()
    assert torch.equal(jigsaw.unshuffle_tiles(shuffled, perms, labels), tiles)
    assert not torch.equal(jigsaw.unshuffle_tiles(shuffled, perms, (labels + 1) % 10), tiles)


def test_per_tile_normalisation():
    tiles = torch.rand(2, 9, 3, 7, 7) * 5 + 2
    out = normalize_each(tiles)
    assert torch.allclose(out.mean(dim=(-2, -1)), torch.zeros(2, 9, 3), atol=1e-5)
    assert torch.allclose(out.std(dim=(-2, -1), unbiased=False), torch.ones(2, 9, 3), atol=1e-3)


def test_examples_show_the_shuffled_solved_and_true_puzzle():
    method = build_method("jigsaw", DataSpec("image", 1, 28, 28), permutations=10, **TINY)
    ex = method.examples(torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8))
    assert ex["shuffled"].shape == ex["solved"].shape == ex["true"].shape == (6, 1, 24, 24)
    assert ex["predicted_permutation"].shape == (6,)


def test_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    method = build_method("jigsaw", DataSpec("image", 1, 28, 28), permutations=4, **TINY)
    yy, xx = torch.meshgrid(torch.arange(28), torch.arange(28), indexing="ij")
    # distinct blobs per image: a puzzle that can be memorised
    centres = torch.randint(4, 24, (16, 3, 2))
    blobs = ((yy - centres[..., :1, None]) ** 2 + (xx - centres[..., 1:, None]) ** 2 < 20).any(1)
    batch = (blobs.unsqueeze(1) * 255).to(torch.uint8)
    losses, _ = fit_batch(method, batch, steps=60, lr=3e-3)
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
