"""Data loaders on small files in the real formats, the offline errors, synthetic data and
the shuffled mini-batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torchvision import datasets

from data.errors import DataUnavailableError
from data.schema import DatasetConfig
from data.sources import load_splits
from data.synthetic import make_synthetic
from data.tensors import ShuffledBatches
from data.torchvision_sources import load_idx_dataset
from tests.data.idx_files import write_idx_data_set

SIZES = {"train": 20, "test": 7}


def check_splits(splits, written) -> None:
    for split_name in ("train", "test"):
        split = getattr(splits, split_name)
        images, labels = written[split_name]
        assert split.inputs.shape == (len(images), 1, 28, 28)
        assert split.inputs.dtype == torch.float32
        assert split.inputs.min() >= 0.0 and split.inputs.max() <= 1.0
        assert torch.equal(split.inputs[:, 0], torch.from_numpy(images).float() / 255)
        assert split.labels.dtype == torch.int64
        assert torch.equal(split.labels, torch.from_numpy(labels.astype(np.int64)))


def test_fashion_mnist_from_a_debian_style_folder(tmp_path: Path) -> None:
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    written = write_idx_data_set(debian, SIZES)
    data_dir = tmp_path / "data"
    splits = load_idx_dataset(datasets.FashionMNIST, data_dir, False, local_sources=(debian,))
    check_splits(splits, written)
    # imported into torchvision's layout, so the next load needs the local source no more
    assert (data_dir / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    check_splits(load_idx_dataset(datasets.FashionMNIST, data_dir, False), written)


def test_files_already_in_the_data_dir_come_first(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    in_data_dir = write_idx_data_set(data_dir / "MNIST" / "raw", SIZES, seed=1, gzipped=False)
    elsewhere = tmp_path / "elsewhere"
    write_idx_data_set(elsewhere, SIZES, seed=2)
    splits = load_idx_dataset(datasets.MNIST, data_dir, False, local_sources=(elsewhere,))
    check_splits(splits, in_data_dir)


def test_missing_files_without_download_name_what_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError) as failure:
        load_idx_dataset(datasets.MNIST, tmp_path, False)
    message = str(failure.value)
    assert f"{tmp_path.resolve()}/MNIST/raw" in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "https://" in message


def test_failed_download_gives_the_same_clear_error(tmp_path: Path, monkeypatch) -> None:
    # An address that refuses connections at once: the real download code runs and fails,
    # as it does on a machine without internet.
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(DataUnavailableError, match="could not be downloaded"):
        load_idx_dataset(datasets.MNIST, tmp_path, True)


def test_subsets_through_the_config(tmp_path: Path) -> None:
    write_idx_data_set(tmp_path / "FashionMNIST" / "raw", SIZES, gzipped=False)
    cfg = OmegaConf.merge(
        OmegaConf.structured(DatasetConfig),
        {"source": "fashion_mnist", "train_size": 5, "test_size": 3, "download": False},
    )
    splits = load_splits(cfg, tmp_path)
    assert (len(splits.train), len(splits.test)) == (5, 3)


def test_synthetic_data_are_fixed_by_their_seed_and_learnable() -> None:
    first = make_synthetic([1, 28, 28], 10, 300, 50, seed=3)
    again = make_synthetic([1, 28, 28], 10, 300, 50, seed=3)
    other = make_synthetic([1, 28, 28], 10, 300, 50, seed=4)
    assert torch.equal(first.train.inputs, again.train.inputs)
    assert torch.equal(first.test.labels, again.test.labels)
    assert not torch.equal(first.train.inputs, other.train.inputs)
    assert first.train.inputs.shape == (300, 1, 28, 28) and first.test.inputs.shape[0] == 50
    assert first.train.inputs.min() >= 0 and first.train.inputs.max() <= 1
    assert len(first.train.labels.unique()) >= 8  # the teacher uses most classes
    # the labels are a linear function of the inputs: a least-squares fit recovers most
    x = torch.cat([first.train.inputs.flatten(1), torch.ones(300, 1)], dim=1).double()
    onehot = torch.nn.functional.one_hot(first.train.labels, 10).double()
    fitted = x @ torch.linalg.lstsq(x, onehot).solution
    assert (fitted.argmax(1) == first.train.labels).float().mean() > 0.9


def test_shuffled_batches() -> None:
    inputs = torch.arange(10.0).reshape(10, 1)
    batches = ShuffledBatches(inputs, inputs.squeeze(1) * 2, batch_size=3, seed=5)
    assert batches.steps_per_epoch == 3  # drop_last: the 10th example waits for a later epoch
    epoch = batches.epoch(0)
    order = epoch.order
    assert torch.equal(order, batches.epoch(0).order)  # a function of (seed, epoch)
    assert not torch.equal(order, batches.epoch(1).order)
    assert sorted(order.tolist()) == list(range(10))
    seen = []
    for index in range(batches.steps_per_epoch):
        x, y = epoch.batch(index)
        assert x.shape == (3, 1) and torch.equal(y, x.squeeze(1) * 2)
        seen += x.squeeze(1).long().tolist()
    assert seen == order[:9].tolist()
    other_seed = ShuffledBatches(inputs, inputs.squeeze(1), batch_size=3, seed=6)
    assert not torch.equal(order, other_seed.epoch(0).order)


def test_batch_larger_than_the_data() -> None:
    with pytest.raises(ValueError, match="batch size 11 is larger than the 10 training"):
        ShuffledBatches(torch.zeros(10, 1), torch.zeros(10), batch_size=11, seed=0)
