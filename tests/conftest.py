"""Shared fixtures and tiny test data (tests never download anything).

Everything a test needs to build a method small lives here once: the specs of the tiny data, the tiny
options of every registered method (`TINY_OPTIONS`), and a tiny stand-in for each method's default dataset
(`tiny_stand_in`), which the contract test over the registry (test_contract.py) and the per-method tests share.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import pytest

from selfsup.data.base import DataSpec, ImageData
from selfsup.data.egomotion import EgomotionData, make_egomotion_pairs
from selfsup.data.interaction import InteractionData, make_interactions
from selfsup.data.pairs import PairData, make_pairs
from selfsup.data.sprites import VideoData, make_sprite_clips
from selfsup.data.text import TextData
from selfsup.methods import jigsaw

# --- tiny specs ------------------------------------------------------------------------------------------
GRAY_SPEC = DataSpec("image", channels=1, height=28, width=28)
COLOUR_SPEC = DataSpec("image", channels=3, height=32, width=32)
CLIP_SPEC = DataSpec("video", 1, 16, 16, frames=5)

# --- tiny options: the smallest nets that still run every part of a method ---------------------------------
TINY = {"encoder_kwargs": {"widths": (8, 8, 8)}}
TINY_BN = {"encoder_kwargs": {"widths": (8, 8, 8), "batch_norm": True}}  # the contrastive methods' BatchNorm
TINY_TEXT = {"encoder_kwargs": {"dim": 32, "layers": 1, "heads": 2, "ffn_dim": 64}}
TINY_GAN = TINY | {"decoder_width": 16, "discriminator_width": 8}
TINY_OPTIONS: dict[str, dict] = {
    "barlow-twins": TINY_BN | {"projector_dim": 16},
    "byol": TINY_BN | {"hidden_dim": 16, "projection_dim": 8},
    "clip": TINY_BN | {"embed_dim": 8, "text_kwargs": {"dim": 16, "layers": 1, "heads": 2, "ffn_dim": 32}},
    "clm": {"encoder_kwargs": {"dim": 32, "layers": 2, "heads": 2, "ffn_dim": 64}},  # 2 layers: look-ahead can leak
    "colorization": TINY | {"decoder_width": 8},
    "cpc": {"encoder_kwargs": {"widths": (4, 4, 8)}, "context_dim": 8},
    "cpc-sequence": TINY | {"code_dim": 8, "context_dim": 8, "steps": 2},
    "dino": TINY_BN | {"hidden_dim": 16, "bottleneck_dim": 8, "out_dim": 32, "local_crops": 2,
             "freeze_last_layer_steps": 0},
    "egomotion": TINY | {"embed_dim": 8},
    "egomotion-invariant": TINY | {"embed_dim": 8},
    "ijepa": {"encoder_kwargs": {"dim": 16, "depth": 1, "heads": 2}, "predictor_dim": 8, "predictor_depth": 1},
    "inpainting": TINY_GAN,
    "jigsaw": TINY | {"permutations": 10},
    "mae": {"encoder_kwargs": {"dim": 32, "depth": 2, "heads": 2}, "decoder_dim": 32, "decoder_depth": 1,
            "decoder_heads": 2},
    "mlm": TINY_TEXT,
    "mlm-nsp": TINY_TEXT,
    "mlm-sop": TINY_TEXT,
    "mocov1": TINY_BN | {"dim": 4, "queue_size": 8},
    "mocov2": TINY_BN | {"dim": 4, "queue_size": 8},
    "mocov3": {"encoder_kwargs": {"dim": 16, "depth": 1, "heads": 2}, "hidden_dim": 16, "projection_dim": 8},
    "nnclr": TINY_BN | {"hidden_dim": 16, "projection_dim": 8, "predictor_hidden_dim": 16, "support_size": 16},
    "nsp": TINY_TEXT,
    "patch-location": TINY,
    "physical-interaction": TINY | {"action_dim": 4, "hidden_dim": 8},
    "rotation": TINY,
    "simclr": TINY_BN,
    "simsiam": TINY_BN | {"projection_dim": 16, "predictor_dim": 4},
    "sop": TINY_TEXT,
    "split-brain": TINY | {"decoder_width": 8},
    "super-resolution": TINY_GAN,
    "swav": TINY_BN | {"hidden_dim": 16, "dim": 8, "prototypes": 10, "local_crops": 2, "queue_length": 16,
             "queue_start_steps": 0, "freeze_prototypes_steps": 0},
    "temporal-order": TINY,
    "tracking-colorization": TINY | {"embed_dim": 8},
    "vicreg": TINY_BN | {"expander_dim": 16},
}


# --- tiny data -----------------------------------------------------------------------------------------------
def synthetic_images(n: int = 512, classes: int = 4, size: int = 28, seed: int = 0) -> ImageData:
    """Class c is a bright bar at an orientation/position of its own plus noise: learnable, not rotation-symmetric."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 40, (n, 1, size, size), generator=g, dtype=torch.uint8)
    for c in range(classes):
        idx = labels == c
        block = images[idx]
        row = 3 + 5 * c
        block[:, :, row:row + 3, 2:size - 8] = 250  # a horizontal bar at a class-specific height, off-centre
        block[:, :, 2:6, 2:6] = 200  # a corner mark, so rotations are distinguishable
        images[idx] = block
    return ImageData(images, labels, [f"class{c}" for c in range(classes)], name="synthetic")


def noise_images(n: int) -> torch.Tensor:
    """uint8 (n, 1, 28, 28) uniform noise, the same for the same n: a raw batch of GRAY_SPEC images."""
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def smooth_colour_images(n: int, seed: int = 0) -> torch.Tensor:
    """uint8 (n, 3, 32, 32) images of smoothly varying colours (bilinear upsampling of 4x4 random colours)."""
    base = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    return (F.interpolate(base, size=(32, 32), mode="bilinear", align_corners=False) * 255).round().to(torch.uint8)


WORDS = "apple banana cherry dog eagle fox grape house igloo jam kite lemon moon nest owl pear".split()


def tiny_text(n: int = 24, seed: int = 0) -> TextData:
    """`n` documents of 6 to 19 random words, labelled even/odd by position, with their own tiny tokenizer."""
    g = torch.Generator().manual_seed(seed)
    texts = [" ".join(WORDS[i] for i in torch.randint(0, len(WORDS), (int(k),), generator=g).tolist())
             for k in torch.randint(6, 20, (n,), generator=g)]
    return TextData.from_texts(texts, [i % 2 for i in range(n)], ["even", "odd"], seq_len=24, vocab_size=60)


def sprite_clips(n: int = 4, seed: int = 0, frames: int = 4, colors: bool = True) -> VideoData:
    """`n` clips of two 8x8 sprites moving on a 16x16 canvas (coloured unless `colors` is False)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(6, 1, 8, 8, dtype=torch.uint8)
    images[:, :, 1:7, 1:7] = torch.randint(100, 256, (6, 1, 6, 6), generator=g, dtype=torch.uint8)
    return make_sprite_clips(images, torch.arange(6) % 2, n, frames=frames, canvas=16, sprite_size=8, colors=colors,
                             seed=seed)


def egomotion_pairs(num_pairs: int = 300, **kwargs) -> EgomotionData:
    """Before/after view pairs of a camera moving over mosaics of 20 noise tiles."""
    return make_egomotion_pairs(noise_images(20), torch.arange(20) % 4, num_pairs, canvases=10, grid=3, **kwargs)


def pokes(num: int = 64, **kwargs) -> InteractionData:
    """Pokes of objects on the simulated table, textured with 20 noise images labelled as all 10 classes."""
    return make_interactions(noise_images(20), torch.arange(20) % 10, num, **kwargs)


def index_caption(i: int) -> str:
    """A caption that spells its item's index in two words (0..255): the pairing tests read it back."""
    return f"an emoji of {WORDS[i // 16]} {WORDS[i % 16]}"


def tiny_pairs(n: int = 32, seed: int = 0) -> PairData:
    """`n` colour images with captions spelling their index (`index_caption`), labelled i % 2, categorised
    i % 4 (category 3 "unseen": in no training caption's place, but here all items are one split)."""
    captions = [index_caption(i) for i in range(n)]
    categories = torch.arange(n) % 4
    return make_pairs(smooth_colour_images(n, seed), captions, torch.arange(n), None, labels=torch.arange(n) % 2,
                      classes=["even", "odd"], categories=categories, category_names=["apple", "banana", "cherry", "dog"],
                      unseen=["dog"], seq_len=12, name="tiny pairs").train


# A tiny stand-in for each method's default dataset (`Method.default_data`): the same kind of data, batch and spec.
TINY_STAND_INS = {
    "fashion-mnist": lambda: synthetic_images(16),
    "photos": lambda: ImageData(smooth_colour_images(16), name="smooth colours"),
    "fortunes": tiny_text,
    "sprites": lambda: sprite_clips(8, frames=6, colors=False),
    "sprites-color": lambda: sprite_clips(8),
    "egomotion": lambda: egomotion_pairs(16),
    "interaction": lambda: pokes(16),
    "emoji": lambda: tiny_pairs(16),
}


def tiny_stand_in(dataset: str):
    """Tiny data of the kind `dataset` holds; a method with a new default dataset needs an entry above."""
    if dataset not in TINY_STAND_INS:
        raise KeyError(f"no tiny stand-in for dataset {dataset!r}: add one to TINY_STAND_INS in tests/conftest.py")
    return TINY_STAND_INS[dataset]()


# --- fixtures and helpers ------------------------------------------------------------------------------------
@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tests use tiny tensors: a second intra-op thread gains nothing and, when the machine is busy,
    thread contention slows small ops tenfold or more. (Spawned processes set their own threads.)"""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_data() -> ImageData:
    return synthetic_images()


@pytest.fixture
def cache_in_tmp(tmp_path_factory, monkeypatch):
    """Jigsaw's permutation sets go to one folder of the test session, never to the user's cache
    (one folder for all tests, so the 9! search runs once per permutation-set size)."""
    monkeypatch.setattr(jigsaw, "CACHE_DIR", tmp_path_factory.getbasetemp() / "selfsup-cache")


def fit_batch(method, batch, steps: int, lr: float) -> tuple[list[float], dict]:
    """Adam on one fixed batch for `steps` steps: the loss of every step and the last step's metrics.

    The overfitting tests use it: a method whose loss and gradients are right can memorise one batch.
    """
    optimizer = torch.optim.Adam(method.parameters(), lr=lr)
    losses, metrics = [], {}
    for _ in range(steps):
        loss, metrics = method.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, metrics


# --- two gloo processes against one --------------------------------------------------------------------
def _spawned(local_rank: int, fn, init_file: str, out_dir: str, world: int, global_batch: int) -> None:
    import os
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=local_rank, world_size=world)
    try:
        per_rank = global_batch // world
        torch.save(fn(slice(local_rank * per_rank, (local_rank + 1) * per_rank)),
                   os.path.join(out_dir, f"rank{local_rank}.pt"))
    finally:
        dist.destroy_process_group()


def results_per_process(fn, tmp_path, global_batch: int, world: int = 2) -> list:
    """Run `fn(shard)` (a module-level function of a test file) on `world` gloo processes, each on its slice
    of a global batch of `global_batch` items, and return what each rank returned (tensors, dicts of them)."""
    import torch.multiprocessing as mp
    mp.spawn(_spawned, args=(fn, str(tmp_path / "init"), str(tmp_path), world, global_batch), nprocs=world, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]


def without_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """`module` with every BatchNorm replaced by identity, in place: per-process batch statistics would make
    two processes differ from one for reasons the two-process tests do not check."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
            setattr(module, name, torch.nn.Identity())
        else:
            without_batchnorm(child)
    return module
