"""The registry of data sources: a data set config's `source` names one of these.

Each loader returns both splits on the CPU, inputs as float32 (N, *input_shape) and labels as
int64 (N,) or None. Adding a data set: one loader here and one YAML in conf/dataset/.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from data.synthetic import make_synthetic
from data.tensors import Splits
from data.torchvision_sources import load_fashion_mnist, load_mnist
from runners.config_schema import DatasetConfig

DEFAULT_SYNTHETIC_SIZES = (512, 256)


def _synthetic(cfg: DatasetConfig, data_dir: Path) -> Splits:
    train_size = cfg.train_size or DEFAULT_SYNTHETIC_SIZES[0]
    test_size = cfg.test_size or DEFAULT_SYNTHETIC_SIZES[1]
    return make_synthetic(cfg.input_shape, cfg.num_classes, train_size, test_size, cfg.seed)


SOURCES: dict[str, Callable[[DatasetConfig, Path], Splits]] = {
    "fashion_mnist": lambda cfg, data_dir: load_fashion_mnist(data_dir, cfg.download),
    "mnist": lambda cfg, data_dir: load_mnist(data_dir, cfg.download),
    "synthetic": _synthetic,
}


def load_splits(cfg: DatasetConfig, data_dir: Path) -> Splits:
    """Both splits of the configured data set, cut to train_size / test_size, on the CPU."""
    try:
        loader = SOURCES[cfg.source]
    except KeyError:
        raise ValueError(
            f"Unknown data source {cfg.source!r}; choose from {sorted(SOURCES)}"
        ) from None
    splits = loader(cfg, Path(data_dir))
    return Splits(splits.train.head(cfg.train_size), splits.test.head(cfg.test_size))
