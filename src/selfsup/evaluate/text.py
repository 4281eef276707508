"""Text evaluation: category classification from few labels per class.

Protocols for a pretrained text method: a linear probe on frozen features ([CLS] vector or the mean
over non-pad tokens, `pool`) and fine-tuning the whole Transformer with a new linear head (the shared
`finetune`). Baselines on the same labels: the same Transformer trained from scratch (the shared
`supervised_baseline`), and bag-of-words logistic regression on TF-IDF of subword counts, in torch.
Label budgets are drawn per class and seed from the labeled pool (None = all) by the sweep every table
shares (`selfsup.evaluate.sweep`), whose `summarize` gives the mean and sample std over seeds.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data.base import DataSource
from selfsup.evaluate.features import FeatureCache
from selfsup.evaluate.finetune import finetune, supervised_baseline
from selfsup.evaluate.linear import linear_probe
from selfsup.evaluate.sweep import budget_rows, draw_budget, summarize, sweep
from selfsup.methods.base import Method
from selfsup.text.tokenizer import NUM_SPECIAL

if TYPE_CHECKING:  # an annotation only: the bag of words reads the token ids that text data holds
    from selfsup.data.text import TextData

TEXT_PROTOCOLS = ("linear", "finetune", "scratch", "bow")  # "scratch": the supervised row; "bow": TF-IDF
FINETUNE_STEPS = {"epochs": 10, "min_steps": 60, "max_steps": 300, "batch_size": 32}  # affordable on 2 cores


HELDOUT_DOCUMENTS = 2000  # enough for a perplexity to 2-3 digits; a check costs a few seconds on 2 cores


@torch.no_grad()
def heldout_lm_metrics(method: Method, data: DataSource, batch_size: int = 256, seed: int = 0,
                       max_documents: int | None = HELDOUT_DOCUMENTS) -> dict[str, float]:
    """A language model's held-out curve point: {"perplexity", "token_acc"} over the first `max_documents`
    documents of `data` (token-weighted; MLM: its masked tokens, masked by a generator seeded with `seed`
    so every check scores the same tokens; CLM: every next token). {} for a method without `heldout_stats`."""
    if not hasattr(method, "heldout_stats") or len(data) == 0:
        return {}
    was_training = method.training
    method.eval()
    device = next(method.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    totals: dict[str, float] = {}
    for index in torch.arange(min(len(data), max_documents or len(data))).split(batch_size):
        batch = {k: v.to(device) for k, v in data.batch(index).items()}
        for k, v in method.heldout_stats(batch, generator).items():
            totals[k] = totals.get(k, 0.0) + float(v)
    method.train(was_training)
    count = max(totals.get("count", 0.0), 1.0)
    return {"perplexity": float(torch.tensor(totals["nll"] / count).exp()), "token_acc": totals["correct"] / count}


@torch.no_grad()
def text_features(method: Method, data: DataSource, pool: str | None = None, batch_size: int = 512) -> Tensor:
    """(N, D) frozen features of every document, pooled as `pool` ("cls", "mean", "last"; None = encoder's)."""
    was_training = method.training
    method.eval()
    device = next(method.parameters()).device
    chunks = []
    for index in torch.arange(len(data)).split(batch_size):
        x = {k: v.to(device) for k, v in method.encoder_input(data.batch(index)).items()}
        chunks.append(method.encoder(x, pool=pool).float().cpu())
    method.train(was_training)
    return torch.cat(chunks)


# --- bag of words -----------------------------------------------------------------------------------
def token_counts(input_ids: Tensor, vocab_size: int) -> Tensor:
    """(N, V) float counts of each ordinary subword per document (special tokens and padding not counted)."""
    counts = torch.zeros(len(input_ids), vocab_size)
    ordinary = (input_ids >= NUM_SPECIAL).float()
    return counts.scatter_add_(1, input_ids, ordinary)


def tfidf(counts: Tensor, document_frequency: Tensor, num_documents: int) -> Tensor:
    """Log-scaled term frequency x smoothed IDF, rows L2-normalised (scikit-learn's sublinear TF-IDF)."""
    idf = torch.log((1 + num_documents) / (1 + document_frequency)) + 1
    return F.normalize(torch.log1p(counts) * idf, dim=1)


def bag_of_words_baseline(labeled: TextData, test: TextData, epochs: int = 200, lr: float = 0.05,
                          weight_decay: float = 1e-4, seed: int = 0) -> dict[str, float]:
    """Multinomial logistic regression on TF-IDF (IDF from the labeled documents), full-batch Adam."""
    vocab_size = labeled.spec.vocab_size
    train_counts, test_counts = token_counts(labeled.input_ids, vocab_size), token_counts(test.input_ids, vocab_size)
    df = (train_counts > 0).float().sum(0)
    xtr, xte = tfidf(train_counts, df, len(labeled)), tfidf(test_counts, df, len(labeled))
    num_classes = int(max(labeled.labels.max(), test.labels.max())) + 1
    g = torch.Generator().manual_seed(seed)
    head = nn.Linear(vocab_size, num_classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.01)
        head.bias.zero_()
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        loss = F.cross_entropy(head(xtr), labeled.labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return {"acc": (head(xte).argmax(1) == test.labels).float().mean().item(),
                "train_acc": (head(xtr).argmax(1) == labeled.labels).float().mean().item()}


# --- label-budget sweeps ----------------------------------------------------------------------------
def text_label_sweep(method: Method, train: DataSource, test: DataSource,
                     budgets: Iterable[int | None] = (5, 20, None), seeds: Iterable[int] = (0, 1, 2),
                     pools: Iterable[str] = ("cls", "mean"),
                     protocols: Iterable[str] = TEXT_PROTOCOLS,
                     finetune_kwargs: dict | None = None, done: Callable | None = None,
                     on_draw: Callable | None = None, cache: FeatureCache | None = None) -> list[dict]:
    """One row per (budget, seed, protocol): {"labels_per_class", "seed", "protocol", "acc"}.

    Protocols: "linear" (one row per pool, named "linear_<pool>"), "finetune" (whole encoder), and the
    baselines "scratch" (same Transformer, random init) and "bow" (TF-IDF logistic regression). Nothing
    is tuned here, so no draw hands hyperparameters to the next. `done(budget, seed)` returns the rows of a
    draw finished earlier (a resumed evaluation) or None; `on_draw` reports progress (see `sweep`).
    The frozen features of each pool are computed once for every budget and seed (and kept in `cache`).
    """
    finetune_kwargs = dict(FINETUNE_STEPS, **(finetune_kwargs or {}))
    protocols, pools = list(protocols), list(pools)
    features = {}
    if "linear" in protocols:
        cache = cache or FeatureCache(None)
        pooled = lambda data, pool: cache.get(method, data, lambda m, d: text_features(m, d, pool), f"text pool={pool}")
        features = {p: (pooled(train, p), pooled(test, p)) for p in pools}

    def evaluate_draw(budget: int | None, seed: int, chosen: None) -> tuple[list[dict], None]:
        index = draw_budget(train.labels, budget, seed)
        labeled = train.subset(index)
        results: dict[str, float] = {}
        for pool, (xtr, xte) in features.items():
            results[f"linear_{pool}"] = linear_probe(xtr[index], labeled.labels, xte, test.labels, seed=seed)["acc"]
        if "finetune" in protocols:
            results["finetune"] = finetune(method, labeled, test, seed=seed, **finetune_kwargs)["acc"]
        if "scratch" in protocols:
            results["scratch"] = supervised_baseline(method, labeled, test, seed=seed, **finetune_kwargs)["acc"]
        if "bow" in protocols:
            results["bow"] = bag_of_words_baseline(labeled, test, seed=seed)["acc"]
        return budget_rows(budget, seed, results), None

    def resumed(budget: int | None, seed: int) -> tuple[list[dict], None] | None:
        rows = done(budget, seed) if done is not None else None
        return (rows, None) if rows else None

    return sweep(budgets, seeds, evaluate_draw, resumed, on_draw)


def summarize_rows(rows: list[dict]) -> dict[tuple[Any, str], tuple[float, float]]:
    """{(labels_per_class, protocol): (mean acc, sample std over seeds)}: the shared `summarize`, keyed."""
    return {(s["labels_per_class"], s["protocol"]): (s["mean"], s["std"])
            for s in summarize(rows, ("labels_per_class", "protocol"))}
