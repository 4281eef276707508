"""The dataset registry: a loader registered by name returns `DatasetSplits(train, test)`.

Each part is a `data.base.DataSource`: `__len__`, `batch(index)` (the raw batch a method's `loss` takes),
`spec` (a DataSpec), `labels` (int64 or None), `classes`, `name` and `subset(index)`. Loaders take no required
arguments, read local files only, and raise SelfSupError saying how to install missing data.
"""
from selfsup.registry import Registry

DATASETS: Registry = Registry("dataset", "selfsup.data")
