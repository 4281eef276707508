"""Seeded, stratified splits: an unlabeled pretraining pool, a labeled budget and a test set."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import torch
from torch import Tensor

from selfsup.data.base import DatasetSplits, DataSource
from selfsup.errors import SelfSupError


@dataclass
class Splits:
    pool: DataSource  # unlabeled pretraining items (labels kept only for monitoring, e.g. online kNN)
    labeled: DataSource  # the label budget
    test: DataSource  # all three are data objects of the same kind (ImageData, text, video...)


def stratified_take(labels: Tensor, per_class: int | None = None, fraction: float | None = None,
                    generator: torch.Generator | None = None, exclude: Tensor | None = None) -> Tensor:
    """Indices of `per_class` examples of every class (or `fraction` of each class), drawn at random.

    `exclude` (bool mask) removes indices from the candidates. Raises SelfSupError when a class has
    fewer candidates than asked for.
    """
    if (per_class is None) == (fraction is None):
        raise SelfSupError("give exactly one of labels-per-class or label-fraction")
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise SelfSupError(f"label fraction must be in (0, 1], got {fraction}")
    if per_class is not None and per_class < 1:
        raise SelfSupError(f"labels per class must be at least 1, got {per_class}")
    available = torch.ones(len(labels), dtype=torch.bool) if exclude is None else ~exclude
    chosen = []
    for c in torch.unique(labels).tolist():
        candidates = torch.nonzero((labels == c) & available).flatten()
        want = per_class if per_class is not None else max(1, round(fraction * len(candidates)))
        if want > len(candidates):
            raise SelfSupError(
                f"label budget of {want} per class is larger than the {len(candidates)} examples of class {c} "
                f"available; lower --labels-per-class (at most {len(candidates)} here)")
        chosen.append(candidates[torch.randperm(len(candidates), generator=generator)[:want]])
    index = torch.cat(chosen)
    return index[torch.randperm(len(index), generator=generator)]


def make_splits(train: DataSource, test: DataSource | None, *, labels_per_class: int | None = None,
                label_fraction: float | None = None, pool_size: int | None = None,
                test_per_class: int = 100, seed: int = 0) -> Splits:
    """Split a source into (pool, labeled, test), all disjoint, stratified and reproducible from `seed`.

    The labeled budget is drawn first, stratified; the unlabeled pool is drawn from what is left
    (all of it when `pool_size` is None). When the source has no test split, `test_per_class`
    examples of each class are carved out before anything else.
    """
    if train.labels is None:
        raise SelfSupError(f"{train.name} has no labels, so it cannot provide a labeled budget or a test set")
    g = torch.Generator().manual_seed(seed)
    used = torch.zeros(len(train), dtype=torch.bool)
    if test is None:
        counts = torch.bincount(train.labels)
        smallest = int(counts[torch.unique(train.labels)].min())
        if smallest <= test_per_class:  # the test set is carved first: say so, not "label budget"
            c = int(torch.nonzero(counts == smallest)[0])
            raise SelfSupError(f"{train.name}: class {c} has {smallest} examples, but {test_per_class} of every class "
                               f"are held out as the test set before labels are drawn (test_per_class), "
                               f"so none would be left; lower test_per_class or use a dataset with more per class")
        test_index = stratified_take(train.labels, per_class=test_per_class, generator=g)
        used[test_index] = True
        test = train.subset(test_index, name=f"{train.name}-test")
    labeled_index = stratified_take(train.labels, labels_per_class, label_fraction, generator=g, exclude=used)
    used[labeled_index] = True
    rest = torch.nonzero(~used).flatten()
    rest = rest[torch.randperm(len(rest), generator=g)]
    if pool_size is not None:
        if pool_size > len(rest):
            raise SelfSupError(f"pool of {pool_size} images asked for, but only {len(rest)} remain after the "
                               f"labeled and test sets; lower --pool-size")
        rest = rest[:pool_size]
    return Splits(pool=train.subset(rest, name=f"{train.name}-pool"),
                  labeled=train.subset(labeled_index, name=f"{train.name}-labeled"), test=test)


# --- the held-out test set ---------------------------------------------------------------------------
# Carved once per dataset and seed, before anything else, so that no pretraining pool, label budget or
# monitor ever sees it. The default seed is the one evaluation always used, so data whose classes are
# large enough keep the test set they had (e.g. mnist5k: the same 100 digits per class).
TEST_SEED = 12345
TEST_PER_CLASS = 100
TEST_MAX_FRACTION = 0.2  # of the smallest class: small classes keep most of their items for training
OWN_TEST_RULE = "the source's own test split"
NO_TEST_RULE = "none: the data has no labels"


@dataclass
class HeldOut:
    """A source's train part split into `rest` (pools and label budgets come from here) and `test`.

    `test_index` holds the positions of the test items in the source's train part when they were carved
    from it; it is None when the source has its own test split or no labels (then `test` is that split
    or None, and `rest` is the whole train part).
    """

    rest: DataSource
    test: DataSource | None
    test_index: Tensor | None
    rule: str
    seed: int


def held_out_per_class(labels: Tensor, per_class: int = TEST_PER_CLASS,
                       max_fraction: float = TEST_MAX_FRACTION) -> int:
    """How many test items to carve from every class: `per_class`, capped at `max_fraction` of the smallest
    class (at least 1), so that every class keeps items for pretraining and label budgets."""
    smallest = int(torch.bincount(labels)[torch.unique(labels)].min())
    if smallest < 2:
        raise SelfSupError("a class has a single labeled example, so no test example can be held out from it "
                           "while keeping one for training; add examples to that class or remove it")
    return max(1, min(per_class, int(max_fraction * smallest)))


def carving_rule(per_class: int, max_fraction: float) -> str:
    """The carving rule in words, as the run folder records it."""
    return (f"carved from the train part: stratified, min({per_class}, {max_fraction:g} x smallest class) "
            f"per class, seeded")


def held_out_test(splits: DatasetSplits, seed: int = TEST_SEED, per_class: int = TEST_PER_CLASS,
                  max_fraction: float = TEST_MAX_FRACTION) -> HeldOut:
    """The held-out test set of `splits` (a DatasetSplits) and the rest of its train part.

    A source with its own test split keeps it and nothing is carved. Otherwise `held_out_per_class` items
    of every class are drawn from the train part with `seed` (deterministic: the same data and seed give the
    same test set, in sorted index order). Unlabeled data has no test set.
    """
    train, test = splits.train, splits.test
    if test is not None:
        return HeldOut(train, test, None, OWN_TEST_RULE, seed)
    if getattr(train, "labels", None) is None:
        return HeldOut(train, None, None, NO_TEST_RULE, seed)
    count = held_out_per_class(train.labels, per_class, max_fraction)
    index = stratified_take(train.labels, per_class=count, generator=torch.Generator().manual_seed(seed))
    return held_out_at(train, index, carving_rule(per_class, max_fraction), seed)


def held_out_at(train: DataSource, test_index: Tensor, rule: str, seed: int) -> HeldOut:
    """Split `train` at the given test positions (e.g. the ones a run folder recorded)."""
    test_index = torch.sort(torch.as_tensor(test_index, dtype=torch.long)).values
    if len(test_index) and (test_index[0] < 0 or test_index[-1] >= len(train)):
        raise SelfSupError(f"test indices run outside the {len(train)} items of {train.name}")
    is_test = torch.zeros(len(train), dtype=torch.bool)
    is_test[test_index] = True
    rest_index = torch.nonzero(~is_test).flatten()
    rest = train.subset(rest_index, name=f"{train.name}-rest")
    return HeldOut(rest, train.subset(test_index, name=f"{train.name}-test"), test_index, rule, seed)


def fingerprint(data: DataSource) -> str:
    """sha256 of a data object's tensors (images or tokens, labels...), with their names, dtypes and shapes.

    Reads the tensor fields of the dataclass every source here is (ImageData, TextData, VideoData...).

    Recorded test indices identify the same items only while the data is unchanged; this checks that.
    """
    h = hashlib.sha256()
    for f in dataclasses.fields(data):
        value = getattr(data, f.name)
        if isinstance(value, Tensor):
            h.update(f"{f.name}:{value.dtype}:{tuple(value.shape)};".encode())
            h.update(value.detach().cpu().contiguous().numpy())
    return h.hexdigest()


def index_fingerprint(index: Tensor) -> str:
    """sha256 of sorted int64 indices: names a test set independently of the order it was drawn in."""
    return hashlib.sha256(torch.sort(index.long()).values.numpy().tobytes()).hexdigest()
