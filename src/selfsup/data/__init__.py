"""Data sources (decoded once into uint8 tensors) and seeded splits."""
from selfsup.data.base import Batch, DatasetSplits, DataSource, DataSpec, ImageData
from selfsup.data.sources import (download_fashion_mnist, fashion_mnist, image_folder, load_dataset, mnist5k, npz,
                                  read_idx)
from selfsup.data.registry import DATASETS
from selfsup.data.splits import HeldOut, Splits, held_out_test, make_splits, stratified_take

__all__ = ["DATASETS", "Batch", "DataSource", "DataSpec", "DatasetSplits", "HeldOut", "ImageData", "Splits",
           "download_fashion_mnist", "fashion_mnist", "held_out_test", "image_folder", "load_dataset", "make_splits",
           "mnist5k", "npz", "read_idx", "stratified_take"]
