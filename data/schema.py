"""The data set schema: what a `conf/dataset/*.yaml` may say, typed, so that Hydra rejects a
misspelt key or a wrong type when it composes the config (runners.config_schema registers it
as part of the top-level schema). It lives with the data, which read it; data/ never imports
runners/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from omegaconf import MISSING

from models.task import LikelihoodName


class Augmentation(str, Enum):
    """Random transforms of training batches (data.augment), applied on the training device."""

    crop_flip = "crop_flip"  # RandomCrop(H x W, padding=crop_padding) + horizontal flip (1/2)


@dataclass
class NormalizationConfig:
    """Per-channel (x - mean) / std, applied to both splits at load time."""

    mean: list[float] = MISSING
    std: list[float] = MISSING


@dataclass
class DatasetConfig:
    """A data set: where it comes from and which problems it can pose.

    The model builder reads `input_shape` and `num_classes`, so a model is never configured
    twice. A classifier needs `num_classes`; an autoencoder needs a
    `reconstruction_likelihood`; a pairing the data set cannot serve is refused at start-up.
    """

    source: str = MISSING  # a key of data.sources.SOURCES
    input_shape: list[int] = field(default_factory=lambda: [1, 28, 28])
    num_classes: int | None = None  # null: the data set has no labels
    reconstruction_likelihood: LikelihoodName | None = None  # null: no autoencoders
    # Use the first train_size / test_size examples (all when null). For `synthetic` these
    # are the sizes generated.
    train_size: int | None = None
    test_size: int | None = None
    # Hold out this many examples of the training split (after train_size) as a validation
    # split, drawn at random with split_seed, the same for every run, optimizer and seed; the
    # run trains on the rest. Tuning (runners.tune) ranks its trials on it, never on the test
    # split. 0: no validation split (the papers' protocol).
    validation_size: int = 0
    split_seed: int = 0
    seed: int = 0  # synthetic data only: the data are fixed by this seed, not the run seed
    download: bool = True  # allow downloading when the files are missing
    # A file to read instead of <data_dir>/<folder>/<file> (sources read from one file:
    # faces, curves); null: the default location.
    local_path: str | None = None
    normalization: NormalizationConfig | None = None  # null: inputs as loaded
    augmentation: Augmentation | None = None  # null: training batches as stored
    crop_padding: int = 4  # for augmentation=crop_flip
