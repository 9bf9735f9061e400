"""The validation split: disjoint from the training and test splits, the same for every run,
optimizer and seed, and set by dataset.split_seed alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from data.sources import load_splits
from tests.conftest import compose_config


def rows(split) -> set[bytes]:
    return {row.numpy().tobytes() for row in split.inputs.flatten(1)}


def splits_of(*overrides: str):
    cfg = compose_config("dataset=synthetic", "model=mlp", *overrides)
    return load_splits(cfg.dataset, Path(cfg.paths.data_dir))


def test_the_three_splits_are_disjoint_and_the_training_split_shrinks() -> None:
    whole = splits_of("dataset.train_size=300")
    held = splits_of("dataset.train_size=300", "dataset.validation_size=60")
    assert held.validation is not None
    assert len(held.train) == 240 and len(held.validation) == 60
    train, valid, test = rows(held.train), rows(held.validation), rows(held.test)
    assert len(train) == 240 and len(valid) == 60  # synthetic rows are distinct
    assert not train & valid and not train & test and not valid & test
    assert train | valid == rows(whole.train)  # nothing lost: the rest of the training split
    assert torch.equal(held.test.inputs, whole.test.inputs)


def test_the_split_is_the_same_for_every_optimizer_and_seed() -> None:
    first = splits_of("dataset.validation_size=50", "optimizer=sgd", "seed=0")
    other = splits_of("dataset.validation_size=50", "optimizer=kfac", "seed=7")
    assert torch.equal(first.validation.inputs, other.validation.inputs)
    assert torch.equal(first.validation.labels, other.validation.labels)
    assert torch.equal(first.train.inputs, other.train.inputs)


def test_the_split_seed_alone_chooses_the_held_out_examples() -> None:
    first = splits_of("dataset.validation_size=50")
    other = splits_of("dataset.validation_size=50", "dataset.split_seed=1")
    assert rows(first.validation) != rows(other.validation)


def test_no_validation_split_by_default() -> None:
    assert splits_of().validation is None


@pytest.mark.parametrize("size", [-1, 512, 10_000])
def test_a_validation_split_the_training_split_cannot_spare_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="validation_size must be between 1 and 511"):
        splits_of(f"dataset.validation_size={size}")
