"""Jigsaw puzzles: predict which of a fixed set of permutations shuffled the 3x3 tiles of an image.

Noroozi & Favaro, "Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles", ECCV 2016.
Kept from the paper: 3x3 tiles with random gaps (each tile at a random offset inside its cell), every
tile normalised on its own, one encoder shared by the nine tiles (the "context-free network"), per-tile
features concatenated and classified into the index of the permutation; the permutation set is chosen
greedily for maximal average Hamming distance over all 9! orderings (Algorithm 1), computed once and
cached under ~/.cache/selfsup/.
Deviations (28x28 images):
- geometry: a random 27x27 crop cut into 9x9 cells holding 7x7 tiles (paper: 225 crop, 75 cells, 64 tiles);
- 100 permutations by default (paper's best: 1000, also supported), because 7x7 tiles carry little content;
- the per-tile fc is 64 units and the joint classifier one 256-unit hidden layer (paper: 512 and 4096);
- no colour jitter / random grayscale against chromatic shortcuts (our data is grayscale).
At evaluation the shared tile encoder sees the whole image, normalised per image as tiles were per tile;
`TileEncoder` pools each block's map to the size it has on a whole image, so features keep one size.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.losses.classification import cross_entropy_and_accuracy
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.nets.tiles import TileEncoder
from selfsup.views.basic import to_float
from selfsup.utils import atomic_save_npy, cache_write
from selfsup.views.patches import crop_patches, jigsaw_positions, normalize_each

CACHE_DIR = Path.home() / ".cache" / "selfsup"


# --- the permutation set ---------------------------------------------------------------------------
def greedy_hamming_permutations(items: int, size: int, seed: int = 0) -> np.ndarray:
    """`size` permutations of `items` elements chosen greedily for maximal average Hamming distance.

    The paper's Algorithm 1: start from a random permutation; then repeatedly add the not-yet-chosen
    permutation whose summed Hamming distance to all chosen ones is largest (first one on ties). A running
    sum of distances over all items! candidates keeps each step one vectorised pass.
    """
    candidates = np.array(list(permutations(range(items))), dtype=np.int64)
    if not 1 <= size <= len(candidates):
        raise SelfSupError(f"a permutation set of {size} is impossible: {items} items have {len(candidates)} orderings")
    # has[i * items + v, c] says candidate c puts item v at position i, so the number of positions where
    # candidate c agrees with q is the sum of `items` rows of `has`: one cheap pass per step.
    has = np.zeros((items * items, len(candidates)), dtype=np.uint8)
    has[(np.arange(items) * items + candidates).T, np.arange(len(candidates))] = 1
    taken = -(10 * items * size)  # keeps a chosen permutation's score below every other's
    chosen = [int(np.random.default_rng(seed).integers(len(candidates)))]
    total = np.zeros(len(candidates), dtype=np.int64)
    for _ in range(size - 1):
        last = chosen[-1]
        total += items - has[np.arange(items) * items + candidates[last]].sum(axis=0, dtype=np.int64)
        total[last] += taken
        chosen.append(int(total.argmax()))
    return candidates[chosen].astype(np.int64)


def permutation_set(size: int = 100, seed: int = 0, cache_dir: Path | str | None = None) -> np.ndarray:
    """The (size, 9) jigsaw permutation set, loaded from the cache or computed once and cached atomically."""
    cache = Path(cache_dir) if cache_dir is not None else CACHE_DIR
    path = cache / f"jigsaw_permutations_{size}_seed{seed}.npy"
    if path.exists():
        try:
            perms = np.load(path)
            if perms.shape == (size, 9):
                return perms
        except (OSError, ValueError):
            pass  # a damaged cache file is recomputed below
    perms = greedy_hamming_permutations(9, size, seed)
    cache_write(lambda: atomic_save_npy(path, perms))  # fsync'd; readers never see half a file
    return perms


def shuffle_tiles(tiles: Tensor, perms: Tensor, labels: Tensor) -> Tensor:
    """Put tile `perms[label][i]` at position i: (N, 9, ...) tiles -> the shuffled puzzle (N, 9, ...)."""
    order = perms[labels]  # (N, 9)
    return tiles[torch.arange(len(tiles), device=tiles.device)[:, None], order]


def unshuffle_tiles(shuffled: Tensor, perms: Tensor, labels: Tensor) -> Tensor:
    """Undo `shuffle_tiles` from the permutation index alone (the puzzle solved)."""
    inverse = perms[labels].argsort(dim=1)
    return shuffled[torch.arange(len(shuffled), device=shuffled.device)[:, None], inverse]


# --- an encoder for tiles that also takes whole images ---------------------------------------------
def tiles_to_image(tiles: Tensor, border: int = 1) -> Tensor:
    """(N, 9, C, t, t) tiles in raster order -> (N, C, 3(t+border), 3(t+border)) pictures, each tile
    stretched to [0, 1] on its own and framed by a black border so the puzzle pieces stay visible."""
    n, _, c, t, _ = tiles.shape
    low = tiles.amin(dim=(-3, -2, -1), keepdim=True)
    high = tiles.amax(dim=(-3, -2, -1), keepdim=True)
    tiles = F.pad((tiles - low) / (high - low).clamp_min(1e-6), (0, border, 0, border))
    s = t + border
    return tiles.view(n, 3, 3, c, s, s).permute(0, 3, 1, 4, 2, 5).reshape(n, c, 3 * s, 3 * s)


# --- the method ------------------------------------------------------------------------------------
@dataclass
class JigsawConfig(MethodConfig):
    permutations: int = 100  # paper: 1000 (also supported); scaled down for 7x7 tiles of 28x28 images
    permutation_seed: int = 0
    cell: int | None = None  # grid cell in pixels; None: image_size // 3 (9 for 28x28)
    tile: int | None = None  # tile in pixels; None: the paper's 64/75 of the cell (7 for 9-pixel cells)
    tile_features: int = 64  # per-tile fc (paper fc6: 512), scaled down
    hidden: int = 256  # joint fc before the classifier (paper fc7: 4096), scaled down
    lr: float = 1e-3  # Adam; the paper used SGD 0.01


@METHODS.register("jigsaw")
class Jigsaw(Method):
    name = "jigsaw"
    Config = JigsawConfig
    default_epochs = 20  # 6.4 s CPU per 20k-image epoch: ~2-2.5 min on 2 cores

    def __init__(self, config: JigsawConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.cell = config.cell or spec.height // 3
        self.tile = config.tile or self.cell * 64 // 75
        if not 1 <= self.tile <= self.cell or 3 * self.cell > min(spec.height, spec.width):
            raise SelfSupError(f"jigsaw cells of {self.cell} and tiles of {self.tile} pixels do not fit "
                               f"{spec.height}x{spec.width} images; choose cell <= size/3 and tile <= cell")
        inner = self.configured_encoder()
        self.encoder = TileEncoder(inner)
        self.register_buffer("perms", torch.from_numpy(permutation_set(config.permutations, config.permutation_seed)))
        self.tile_fc = nn.Sequential(nn.Linear(self.encoder.feature_dim(), config.tile_features), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(nn.Linear(9 * config.tile_features, config.hidden), nn.ReLU(inplace=True),
                                        nn.Linear(config.hidden, config.permutations))

    def encoder_input(self, batch: Tensor) -> Tensor:
        """The whole image, normalised per image and channel as the tiles were per tile."""
        return normalize_each(to_float(batch))

    def make_puzzles(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Raw tiles (N, 9, C, t, t) in true order, the shuffled normalised puzzle, and the permutation index."""
        n, _, h, w = images.shape
        tops, lefts = jigsaw_positions(n, min(h, w), self.cell, self.tile, images.device)
        tiles = crop_patches(images, tops, lefts, self.tile)
        labels = torch.randint(0, len(self.perms), (n,)).to(images.device)
        return tiles, shuffle_tiles(normalize_each(tiles), self.perms, labels), labels

    def classify(self, puzzle: Tensor) -> Tensor:
        """Logits over the permutation set from a shuffled puzzle (N, 9, C, t, t)."""
        per_tile = self.tile_fc(self.encoder(puzzle.flatten(0, 1)))  # one shared encoder for all tiles
        return self.classifier(per_tile.view(len(puzzle), -1))

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        _, puzzle, labels = self.make_puzzles(to_float(batch))
        loss, accuracy = cross_entropy_and_accuracy(self.classify(puzzle), labels)
        return loss, {"pretext_acc": accuracy}

    @torch.no_grad()
    def examples(self, batch: Tensor) -> dict[str, Tensor]:
        """8 puzzles: as shuffled, as solved with the predicted permutation, and the true arrangement."""
        tiles, puzzle, labels = self.make_puzzles(to_float(batch[:8]))
        predicted = self.classify(puzzle).argmax(1)
        shuffled = shuffle_tiles(tiles, self.perms, labels)
        return {"shuffled": tiles_to_image(shuffled),
                "solved": tiles_to_image(unshuffle_tiles(shuffled, self.perms, predicted)),
                "true": tiles_to_image(tiles),
                "true_permutation": labels, "predicted_permutation": predicted}
