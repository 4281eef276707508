"""CLIP (Radford et al., 2021): the loss against a plain reference, the learned and clamped logit scale,
zero-shot weights against an explicit computation, retrieval recall, the pairing of images and captions
through batching and augmentation, the emoji source and the user's pairs, and two processes against one."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import TINY_OPTIONS, WORDS, fit_batch, index_caption, results_per_process, tiny_pairs, without_batchnorm
from selfsup.data.pairs import EMOJI_FONT, EMOJI_TEST, caption_tokens, emoji, parse_emoji_test, read_pairs
from selfsup.data.sources import load_dataset
from selfsup.errors import SelfSupError
from selfsup.evaluate.zero_shot import (confusion, language_image_evaluation, retrieval, zero_shot,
                                        zero_shot_weights)
from selfsup.losses.clip import clip_loss
from selfsup.methods.base import build_method
from selfsup.text.tokenizer import PAD_ID

TINY = TINY_OPTIONS["clip"]


def tiny_clip(data=None, **options):
    data = data if data is not None else tiny_pairs()
    torch.manual_seed(0)
    return build_method("clip", data.spec, **(TINY | options)), data


# --- the loss --------------------------------------------------------------------------------------------
def reference_clip_loss(image: torch.Tensor, text: torch.Tensor, scale: float) -> torch.Tensor:
    """The paper's Figure 3, written out pair by pair."""
    n = len(image)
    total = 0.0
    for i in range(n):
        sims_i = torch.stack([scale * F.cosine_similarity(image[i], text[j], dim=0) for j in range(n)])
        sims_t = torch.stack([scale * F.cosine_similarity(text[i], image[j], dim=0) for j in range(n)])
        total = total - torch.log(torch.exp(sims_i[i]) / torch.exp(sims_i).sum()) / (2 * n)
        total = total - torch.log(torch.exp(sims_t[i]) / torch.exp(sims_t).sum()) / (2 * n)
    return total


def test_loss_equals_the_papers_pseudocode_pair_by_pair():
    g = torch.Generator().manual_seed(0)
    image, text = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    for scale in (1.0, 14.3):
        torch.testing.assert_close(clip_loss(image, text, scale), reference_clip_loss(image, text, scale))


def test_loss_is_low_for_matched_pairs_and_symmetric_in_its_two_directions():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 16, generator=g)
    assert clip_loss(x, x, 100.0) < 1e-3  # every image's own caption is by far the nearest
    y = torch.randn(8, 16, generator=g)
    torch.testing.assert_close(clip_loss(x, y, 10.0), clip_loss(y, x, 10.0))


def test_clip_memorises_one_batch_of_pairs():
    """Loss and gradients that are right let the model match 16 images to their 16 captions."""
    method, data = tiny_clip(crop_scale=(1.0, 1.0))
    losses, metrics = fit_batch(method, data.batch(torch.arange(16)), steps=60, lr=3e-3)
    assert losses[-1] < 0.2 * losses[0] and metrics["pretext_acc"] == 1.0


# --- the logit scale -------------------------------------------------------------------------------------
def test_logit_scale_starts_at_one_over_0_07_and_is_learned():
    method, data = tiny_clip()
    assert method.scale().item() == pytest.approx(1 / 0.07)
    loss, metrics = method.loss(data.batch(torch.arange(16)))
    assert metrics["logit_scale"] == pytest.approx(1 / 0.07)
    loss.backward()
    assert method.logit_scale.grad is not None and method.logit_scale.grad.abs() > 0
    before = method.logit_scale.item()
    torch.optim.SGD([method.logit_scale], lr=0.1).step()
    assert method.logit_scale.item() != before


def test_logit_scale_is_clamped_at_100_in_the_loss_and_in_the_parameter():
    method, data = tiny_clip()
    with torch.no_grad():
        method.logit_scale.fill_(math.log(300.0))
    assert method.scale().item() == pytest.approx(100.0)
    loss, metrics = method.loss(data.batch(torch.arange(16)))
    assert metrics["logit_scale"] == pytest.approx(100.0)
    loss.backward()
    assert method.logit_scale.grad.item() == 0.0  # past the clamp no gradient pushes it further
    method.after_step(0.5)
    assert method.logit_scale.item() == pytest.approx(math.log(100.0))


def test_an_initial_scale_above_the_clamp_is_refused():
    with pytest.raises(SelfSupError, match="init_logit_scale"):
        tiny_clip(init_logit_scale=math.log(200.0))


# --- zero-shot and retrieval -----------------------------------------------------------------------------
def test_zero_shot_weights_equal_an_explicit_prompt_ensemble():
    method, data = tiny_clip()
    method.eval()
    names, templates = ["apple pear", "moon"], ["an emoji of {}", "a picture of {}"]
    weights = zero_shot_weights(method, names, templates)
    tokenizer = data.tokenizer
    expected = []
    for name in names:
        ids = caption_tokens(tokenizer, [t.format(name) for t in templates], data.input_ids.shape[1])
        with torch.no_grad():
            z = F.normalize(method.text_projection(method.text_encoder({"input_ids": ids, "attention_mask": ids != PAD_ID})), dim=-1)
        expected.append(F.normalize(z.mean(0), dim=0))
    torch.testing.assert_close(weights, torch.stack(expected))
    # predictions are the argmax of image embedding . class weight
    targets = torch.arange(len(data)) % 2
    result = zero_shot(method, data, names, targets, templates)
    with torch.no_grad():
        images = F.normalize(method.image_projection(method.encoder(data.images.float() / 255)), dim=-1)
    predictions = (images @ torch.stack(expected).T).argmax(1)
    assert result["acc"] == pytest.approx((predictions == targets).float().mean().item())
    assert torch.equal(torch.tensor(result["confusion"]), confusion(targets, predictions, 2))
    assert sum(map(sum, result["confusion"])) == len(data)


def test_retrieval_recall_counts_the_rank_of_each_partner():
    # 3 pairs: image 0 finds its caption first; image 1 second; image 2 third.
    image = torch.eye(3)
    text = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8], [0.9, 0.1, 0.3]])
    text = F.normalize(text, dim=1)
    r = retrieval(image, text, ks=(1, 2, 3))
    # image->text ranks: image0 -> caption0 (1.0 > 0.9) rank 0; image1 -> caption1 0.6 vs 0.0, 0.1: rank 0;
    # image2 -> caption2 0.3 vs 0.0, 0.8: rank 1.
    assert r["i2t_R@1"] == pytest.approx(2 / 3) and r["i2t_R@2"] == 1.0
    # text->image: caption1's own image (1) scores 0.6 against image2's 0.8, caption2's (2) 0.31 against
    # image0's 0.94: both rank 1; caption0 ranks 0.
    assert r["t2i_R@1"] == pytest.approx(1 / 3) and r["t2i_R@2"] == 1.0
    collapsed = retrieval(torch.ones(4, 2), torch.ones(4, 2), ks=(1,))
    assert collapsed["i2t_R@1"] == 0.0  # ties count against the partner: no credit for a collapsed model


def test_language_image_evaluation_scores_seen_and_unseen_categories_apart():
    method, data = tiny_clip()
    result = language_image_evaluation(method, data)
    seen, unseen = result["zero_shot"]["seen"], result["zero_shot"]["unseen"]
    assert seen["classes"] == ["apple", "banana", "cherry"] and unseen["classes"] == ["dog"]
    assert seen["n"] == 24 and unseen["n"] == 8 and unseen["acc"] == 1.0  # one unseen class: trivially right
    assert set(result["retrieval"]) >= {"i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10"}


# --- the pairing -----------------------------------------------------------------------------------------
def caption_index(method_data, input_ids: torch.Tensor) -> list[int]:
    """Read the index back from each caption's tokens (`index_caption`)."""
    texts = method_data.tokenizer.decode_batch(input_ids.tolist())
    return [WORDS.index(t.split()[-2]) * 16 + WORDS.index(t.split()[-1]) for t in texts]


def test_the_caption_of_item_i_stays_with_image_i_through_subsets_batches_and_crops():
    n = 48
    data = tiny_pairs(n)
    data.images[:] = torch.arange(n, dtype=torch.uint8)[:, None, None, None] * 5  # image i is flat grey 5i
    part = data.subset(torch.randperm(n, generator=torch.Generator().manual_seed(3))[:40])
    index = torch.randperm(len(part), generator=torch.Generator().manual_seed(4))[:16]
    batch = part.batch(index)
    from_images = (batch["images"][:, 0, 0, 0].long() // 5).tolist()
    assert caption_index(data, batch["input_ids"]) == from_images
    assert [index_caption(i) for i in from_images] == [part.captions[i] for i in index.tolist()]
    method, _ = tiny_clip(data)
    crops = method.views(batch["images"])  # a crop of a flat image is the same flat image: its index survives
    assert ((crops[:, 0, 0, 0] * 255).round().long() // 5).tolist() == from_images
    assert torch.equal(batch["attention_mask"], batch["input_ids"] != PAD_ID)


def test_training_batches_keep_pairs_together(tmp_path):
    """The trainer's own batches (a seeded permutation per epoch) keep image i with caption i."""
    from selfsup.train import InMemoryBatches

    class Module:  # what InMemoryBatches reads of the Lightning module
        _trainer, current_epoch, batches_done, device = None, 1, 0, torch.device("cpu")

    n = 40
    data = tiny_pairs(n)
    data.images[:] = torch.arange(n, dtype=torch.uint8)[:, None, None, None] * 5
    for batch in InMemoryBatches(data, 8, seed=0, module=Module()):
        assert caption_index(data, batch["input_ids"]) == (batch["images"][:, 0, 0, 0].long() // 5).tolist()


# --- data ------------------------------------------------------------------------------------------------
EMOJI_TABLE = """# group: Smileys & Emotion
# subgroup: face-smiling
1F600 ; fully-qualified # 😀 E1.0 grinning face
1F603 ; fully-qualified # 😃 E0.6 grinning face with big eyes
263A FE0F ; fully-qualified # ☺️ E0.6 smiling face
263A ; unqualified # ☺ E0.6 smiling face
# subgroup: face-affection
1F60D ; fully-qualified # 😍 E0.6 smiling face with heart-eyes
1F618 ; fully-qualified # 😘 E0.6 face blowing a kiss
# group: Component
# subgroup: skin-tone
1F3FB ; component # 🏻 E1.0 light skin tone
# group: Animals & Nature
# subgroup: animal-mammal
1F435 ; fully-qualified # 🐵 E0.6 monkey face
1F412 ; fully-qualified # 🐒 E0.6 monkey
1F436 ; fully-qualified # 🐶 E0.6 dog face
"""


def test_emoji_test_table_is_parsed_with_groups_and_subgroups():
    items = parse_emoji_test(EMOJI_TABLE)
    assert [e.name for e in items] == ["grinning face", "grinning face with big eyes", "smiling face",
                                       "smiling face with heart-eyes", "face blowing a kiss", "monkey face",
                                       "monkey", "dog face"]
    assert items[2].text == "\u263a\ufe0f" and items[5].group == "Animals & Nature" and items[5].subgroup == "animal-mammal"


@pytest.mark.skipif(not (EMOJI_FONT.exists() and EMOJI_TEST.exists()),
                    reason="Debian fonts-noto-color-emoji / unicode-data not installed (make test installs them)")
def test_emoji_source_on_a_small_table_renders_captions_splits_and_caches(tmp_path):
    table = tmp_path / "emoji-test.txt"
    table.write_text(EMOJI_TABLE, encoding="utf-8")
    splits = emoji(table=table, cache_dir=tmp_path / "cache", unseen_every=2, test_fraction=0.5)
    train, test = splits.train, splits.test
    assert len(train) + len(test) == 8 and train.images.shape[1:] == (3, 32, 32) and train.images.dtype == torch.uint8
    assert test.unseen_categories == ["face affection"]  # every second subgroup: none of it in training
    assert not any("face affection" in c for c in train.captions)
    assert all("face affection" in c for c in test.captions if "kiss" in c or "heart-eyes" in c)
    assert "an emoji of monkey face, animal mammal, animals & nature" in train.captions + test.captions
    assert train.classes == ["smileys & emotion", "animals & nature"]
    # colour, not a blank square: the bitmap font was drawn
    assert (train.images.float().std(dim=(1, 2, 3)) > 10).all()
    cached = list((tmp_path / "cache").glob("emoji-32px-*.npz"))
    assert len(cached) == 1
    again = emoji(table=table, cache_dir=tmp_path / "cache", unseen_every=2, test_fraction=0.5)
    assert torch.equal(again.train.images, train.images) and again.train.captions == train.captions


def test_caption_vocabulary_is_whole_words_and_spells_out_unseen_ones():
    from selfsup.text.tokenizer import word_tokenizer
    tokenizer = word_tokenizer(["An emoji of a grinning face", "an emoji of a cat"])
    assert tokenizer.encode("a grinning cat", add_special_tokens=False).tokens == ["a", "grinning", "cat"]
    assert tokenizer.encode("a caft", add_special_tokens=False).tokens == ["a", "c", "##a", "##f", "##t"]
    again = word_tokenizer(["an emoji of a cat", "An emoji of a grinning face"])  # order does not matter
    assert again.get_vocab() == tokenizer.get_vocab()


def test_missing_emoji_packages_are_named(tmp_path):
    with pytest.raises(SelfSupError, match="fonts-noto-color-emoji"):
        emoji(font=tmp_path / "none.ttf", table=tmp_path / "none.txt")


def write_png(path: Path, value: int) -> None:
    Image.fromarray(np.full((20, 20, 3), value, dtype=np.uint8)).save(path)


def test_the_users_pairs_from_a_folder_with_captions_beside_the_images(tmp_path):
    for cls, values in (("cats", (10, 20)), ("dogs", (30, 40))):
        (tmp_path / cls).mkdir()
        for v in values:
            write_png(tmp_path / cls / f"img{v}.png", v)
            (tmp_path / cls / f"img{v}.txt").write_text(f"a photo numbered {v}")
    write_png(tmp_path / "cats" / "no_caption.png", 99)  # no .txt beside it: not a pair
    splits = load_dataset(str(tmp_path), modality="image-text", size=16)
    data = splits.train
    assert len(data) == 4 and data.images.shape[1:] == (3, 16, 16) and data.classes == ["cats", "dogs"]
    for i in range(4):  # each caption is the one beside its image
        assert data.captions[i] == f"a photo numbered {int(data.images[i, 0, 0, 0])}"
    assert data.labels.tolist() == [0, 0, 1, 1]


def test_the_users_pairs_from_a_csv(tmp_path):
    for v in (50, 60, 70):
        write_png(tmp_path / f"{v}.png", v)
    (tmp_path / "pairs.csv").write_text("image,caption\n50.png,fifty grey\n60.png,\"sixty, grey\"\n70.png,seventy\n")
    data = read_pairs(tmp_path / "pairs.csv").train
    assert data.captions == ["fifty grey", "sixty, grey", "seventy"]
    assert data.images[:, 0, 0, 0].tolist() == [50, 60, 70] and data.labels is None
    (tmp_path / "bad.csv").write_text("50.png,ok\nmissing.png,gone\n")
    with pytest.raises(SelfSupError, match="missing.png does not exist"):
        read_pairs(tmp_path / "bad.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SelfSupError, match="no image-caption pairs"):
        read_pairs(tmp_path / "empty")


def test_clip_on_plain_images_is_refused_with_a_clear_error():
    from conftest import COLOUR_SPEC
    with pytest.raises(SelfSupError, match="image-text"):
        build_method("clip", COLOUR_SPEC, **TINY)


# --- two processes against one ---------------------------------------------------------------------------
GLOBAL_BATCH = 8


def _clip_step(shard: slice) -> dict:
    import torch.distributed as dist
    from selfsup.distributed import world_size
    data = tiny_pairs(GLOBAL_BATCH)
    torch.manual_seed(0)  # the same initial weights in every process
    method = without_batchnorm(build_method("clip", data.spec, **TINY, crop_scale=(1.0, 1.0)))  # full crops: no randomness
    loss, _ = method.loss(data.batch(torch.arange(GLOBAL_BATCH)[shard]))
    loss.backward()
    grads = {}
    for name, p in method.named_parameters():
        if p.grad is not None:
            g = p.grad.clone()
            if dist.is_initialized():
                dist.all_reduce(g)
                g /= world_size()
            grads[name] = g
    return {"loss": loss.detach(), "grads": grads}


def test_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    ranks = results_per_process(_clip_step, tmp_path, GLOBAL_BATCH)
    single = _clip_step(slice(0, GLOBAL_BATCH))
    mean_loss = sum(r["loss"] for r in ranks) / len(ranks)  # each rank averages its own images and captions
    torch.testing.assert_close(mean_loss, single["loss"], atol=1e-5, rtol=1e-5)
    assert "logit_scale" in single["grads"]
    for name, grad in single["grads"].items():
        for r in ranks:
            torch.testing.assert_close(r["grads"][name], grad, atol=1e-5, rtol=1e-4)


def test_evaluate_gives_a_clip_method_zero_shot_and_retrieval_beside_the_probes(tmp_path):
    import selfsup
    for c, cls in enumerate(("cats", "dogs")):
        (tmp_path / cls).mkdir()
        for i in range(12):
            write_png(tmp_path / cls / f"{i}.png", 10 * i + 120 * c)
            (tmp_path / cls / f"{i}.txt").write_text(f"a {cls[:-1]} numbered {i}")
    data = read_pairs(tmp_path, size=16).train
    method, _ = tiny_clip(data)
    out = selfsup.evaluate(method, data=str(tmp_path), protocols=["knn"], labels_per_class=[2])
    li = out["language_image"]
    assert li["zero_shot"]["seen"]["classes"] == ["cats", "dogs"] and "unseen" not in li["zero_shot"]
    assert li["retrieval"]["n"] == out["test_size"] and [r["protocol"] for r in out["rows"]] == ["knn"]
