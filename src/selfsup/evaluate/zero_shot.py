"""Language-image evaluation without a trained classifier: zero-shot classification from prompts, and
image-to-text / text-to-image retrieval (Radford et al., 2021, sections 3.1 and 3.2).

Zero-shot: each class name is written into prompts ("an emoji of {}"), the prompts are embedded by the text
encoder, normalised, averaged over prompts and normalised again (the paper's prompt ensembling); an image is
assigned the class whose embedding has the largest cosine with the image's embedding. Nothing is trained.

Retrieval: on held-out pairs, for every image the rank of its own caption among all captions (and the other
way round); recall@k is the fraction whose partner ranks within the first k.

The method must offer `encode_image(float images)`, `encode_text(token dict)` and carry its tokenizer in
`spec.extra["tokenizer"]` (CLIP does); the data is a `data.pairs.PairData`.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

from selfsup.data.pairs import PROMPT, PairData, caption_tokens
from selfsup.errors import SelfSupError
from selfsup.text.tokenizer import PAD_ID, tokenizer_from_json

RECALL_AT = (1, 5, 10)


def is_language_image(method) -> bool:
    return hasattr(method, "encode_image") and hasattr(method, "encode_text")


def _device(method) -> torch.device:
    return next(method.parameters()).device


def tokens(method, texts: list[str]) -> dict[str, Tensor]:
    """Texts as the token batch the method's text encoder takes, with the run's own tokenizer."""
    if "tokenizer" not in method.spec.extra:
        raise SelfSupError("this run keeps no tokenizer in its spec, so it cannot embed text prompts")
    ids = caption_tokens(tokenizer_from_json(method.spec.extra["tokenizer"]), texts, method.spec.seq_len)
    ids = ids.to(_device(method))
    return {"input_ids": ids, "attention_mask": ids != PAD_ID}


@torch.no_grad()
def text_embeddings(method, texts: list[str], batch_size: int = 512) -> Tensor:
    method.eval()
    return torch.cat([method.encode_text(tokens(method, texts[i:i + batch_size])).float().cpu()
                      for i in range(0, len(texts), batch_size)])


@torch.no_grad()
def image_embeddings(method, data: PairData, batch_size: int = 512) -> Tensor:
    method.eval()
    device = _device(method)
    return torch.cat([method.encode_image(method.encoder_input(data.images[i].to(device))).float().cpu()
                      for i in torch.arange(len(data)).split(batch_size)])


@torch.no_grad()
def zero_shot_weights(method, class_names: list[str], templates: Iterable[str] = (PROMPT,)) -> Tensor:
    """(C, E): per class the normalised mean of its prompts' normalised text embeddings."""
    templates = list(templates)
    prompts = [t.format(name) for name in class_names for t in templates]
    e = text_embeddings(method, prompts).view(len(class_names), len(templates), -1).mean(1)
    return torch.nn.functional.normalize(e, dim=-1)


def confusion(targets: Tensor, predictions: Tensor, classes: int) -> Tensor:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    return torch.bincount(targets * classes + predictions, minlength=classes * classes).view(classes, classes)


def zero_shot(method, data: PairData, class_names: list[str], targets: Tensor,
              templates: Iterable[str] = (PROMPT,), images: Tensor | None = None) -> dict:
    """Zero-shot accuracy of `data`'s images against `class_names` (targets index into them), with the
    confusion matrix. `images` passes precomputed image embeddings."""
    weights = zero_shot_weights(method, class_names, templates)
    images = image_embeddings(method, data) if images is None else images
    predictions = (images @ weights.T).argmax(1)
    return {"acc": (predictions == targets).float().mean().item() if len(targets) else float("nan"),
            "n": len(targets), "classes": list(class_names), "chance": 1 / max(len(class_names), 1),
            "confusion": confusion(targets, predictions, len(class_names)).tolist()}


def retrieval(image: Tensor, text: Tensor, ks: Iterable[int] = RECALL_AT) -> dict[str, float]:
    """Recall@k of image->text and text->image for normalised embeddings (N, E); pair i is (image i, text i).

    Ties count against the partner (its rank is the number of items scoring at least as high, minus one
    for itself), so a collapsed model scores chance, not 100%.
    """
    sim = image @ text.T  # (N, N)
    own = sim.diagonal()
    rank_i2t = (sim >= own[:, None]).sum(1) - 1  # captions scoring at least as high as the image's own
    rank_t2i = (sim >= own[None, :]).sum(0) - 1
    out = {}
    for k in ks:
        out[f"i2t_R@{k}"] = (rank_i2t < k).float().mean().item()
        out[f"t2i_R@{k}"] = (rank_t2i < k).float().mean().item()
    return out


def language_image_evaluation(method, test: PairData, seen: Iterable[str] | None = None,
                              templates: Iterable[str] = (PROMPT,)) -> dict:
    """Zero-shot classification and retrieval on held-out pairs.

    Zero-shot is over `test.category_names` (e.g. emoji subgroups): "seen" = test images of categories that
    had training items, classified among those categories; "unseen" = test images of categories kept out of
    training (`test.unseen_categories`), classified among the unseen ones only. `seen` defaults to every
    category not listed unseen. Without categories, zero-shot uses the labels and their class names.
    """
    if not isinstance(test, PairData):
        raise SelfSupError("zero-shot and retrieval need image-caption pairs (a PairData), e.g. the emoji data")
    images = image_embeddings(method, test)
    texts = text_embeddings(method, test.captions)
    result = {"retrieval": retrieval(images, texts) | {"n": len(test)}, "zero_shot": {}}
    if test.categories is not None and test.category_names:
        names, cats = test.category_names, test.categories
    elif test.labels is not None and test.classes:
        names, cats = test.classes, test.labels
    else:
        return result
    unseen = set(test.unseen_categories)
    seen = set(seen) if seen is not None else set(names) - unseen
    for part, chosen in (("seen", [n for n in names if n in seen]), ("unseen", [n for n in names if n in unseen])):
        keep = torch.tensor([names[c] in chosen for c in cats.tolist()], dtype=torch.bool)
        if not chosen or not keep.any():
            continue
        remap = {names.index(n): i for i, n in enumerate(chosen)}
        targets = torch.tensor([remap[c] for c in cats[keep].tolist()], dtype=torch.long)
        result["zero_shot"][part] = zero_shot(method, test, chosen, targets, templates, images[keep])
    return result


@torch.no_grad()
def top_captions(method, data: PairData, queries: Tensor, k: int = 5) -> list[list[tuple[str, float, bool]]]:
    """For each query image index: its `k` best captions among `data`'s, with cosine and whether it is its own."""
    images = image_embeddings(method, data.subset(queries))
    texts = text_embeddings(method, data.captions)
    sim, best = (images @ texts.T).topk(min(k, len(data)), dim=1)
    return [[(data.captions[j], s, j == q) for j, s in zip(row.tolist(), srow.tolist())]
            for q, row, srow in zip(queries.tolist(), best, sim)]
