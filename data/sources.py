"""The registry of data sources: a data set config's `source` names one of these.

Each loader returns both splits on the CPU, inputs as float32 (N, *input_shape) and labels as
int64 (N,) or None. `load_splits` then cuts the subset (train_size / test_size), holds out
the validation split (validation_size, data.validation) and applies the config's
normalisation (data.augment); augmentation of training batches happens later, on the training
device (data.tensors.ShuffledBatches). Adding a data set: one loader here and one
YAML in conf/dataset/.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from data.augment import normalize_splits
from data.schema import DatasetConfig
from data.synthetic import make_synthetic
from data.tensors import Splits
from data.validation import hold_out_validation

DEFAULT_SYNTHETIC_SIZES = (512, 256)

# The loaders of files import torchvision, which takes ~2 s to import (it loads torch's
# compiler stack): each is imported when its data set is loaded, so that a run on other data,
# and every test that starts a run, does not pay for it.


def _fashion_mnist(cfg: DatasetConfig, data_dir: Path) -> Splits:
    from data.torchvision_sources import load_fashion_mnist

    return load_fashion_mnist(data_dir, cfg.download)


def _mnist(cfg: DatasetConfig, data_dir: Path) -> Splits:
    from data.torchvision_sources import load_mnist

    return load_mnist(data_dir, cfg.download)


def _cifar10(cfg: DatasetConfig, data_dir: Path) -> Splits:
    from data.cifar import load_cifar10

    return load_cifar10(data_dir, cfg.download)


def _cifar100(cfg: DatasetConfig, data_dir: Path) -> Splits:
    from data.cifar import load_cifar100

    return load_cifar100(data_dir, cfg.download)


def _faces(cfg: DatasetConfig, data_dir: Path) -> Splits:
    from data.matlab_sources import load_faces

    return load_faces(data_dir, cfg.download, cfg.local_path)


def _curves(cfg: DatasetConfig, data_dir: Path) -> Splits:
    from data.matlab_sources import load_curves

    return load_curves(data_dir, cfg.download, cfg.local_path)


def _synthetic(cfg: DatasetConfig, data_dir: Path) -> Splits:
    train_size = cfg.train_size or DEFAULT_SYNTHETIC_SIZES[0]
    test_size = cfg.test_size or DEFAULT_SYNTHETIC_SIZES[1]
    return make_synthetic(cfg.input_shape, cfg.num_classes, train_size, test_size, cfg.seed)


SOURCES: dict[str, Callable[[DatasetConfig, Path], Splits]] = {
    "fashion_mnist": _fashion_mnist,
    "mnist": _mnist,
    "cifar10": _cifar10,
    "cifar100": _cifar100,
    "faces": _faces,
    "curves": _curves,
    "synthetic": _synthetic,
}
# Sources read from one file, which dataset.local_path may name.
LOCAL_PATH_SOURCES = ("faces", "curves")


def load_splits(cfg: DatasetConfig, data_dir: Path) -> Splits:
    """The splits of the configured data set, cut to train_size / test_size, with the
    validation split held out of the training one (data.validation), normalised, on the CPU."""
    try:
        loader = SOURCES[cfg.source]
    except KeyError:
        raise ValueError(
            f"Unknown data source {cfg.source!r}; choose from {sorted(SOURCES)}"
        ) from None
    if cfg.local_path is not None and cfg.source not in LOCAL_PATH_SOURCES:
        raise ValueError(
            f"dataset.local_path is only read by the sources {list(LOCAL_PATH_SOURCES)}; "
            f"source {cfg.source!r} reads paths.data_dir"
        )
    splits = loader(cfg, Path(data_dir))
    splits = Splits(splits.train.head(cfg.train_size), splits.test.head(cfg.test_size))
    splits = hold_out_validation(splits, cfg.validation_size, cfg.split_seed)
    if cfg.normalization is not None:
        splits = normalize_splits(splits, cfg.normalization.mean, cfg.normalization.std)
    return splits
