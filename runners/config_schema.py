"""Typed schemas for the Hydra config tree, registered in Hydra's ConfigStore.

Every group whose keys are fixed by the harness (trainer, dataset, logger, paths and the top
level) is a dataclass, here or, for the dataset, with the data (data.schema), so a misspelt
key or a value of the wrong type, in a YAML file or on the command line, fails at composition
time with Hydra's own message, before anything runs.

The optimizer and model groups are open: their keys are the constructor arguments of the
`_target_` class, so any torch.optim optimizer runs from a config file alone. Those keys are
checked against the constructor's signature at start-up instead (`runners.build`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from data.schema import Augmentation, DatasetConfig, NormalizationConfig
from models.task import LikelihoodName, Task

__all__ = [
    "Augmentation",
    "Config",
    "DatasetConfig",
    "LikelihoodName",
    "NormalizationConfig",
    "Precision",
    "Task",
    "TrainerConfig",
]


class LRSchedule(str, Enum):
    """Learning-rate schedules the runner applies once per epoch."""

    constant = "constant"
    step = "step"  # multiply by lr_decay_factor at each epoch in lr_decay_epochs
    cosine = "cosine"  # cosine annealing to 0 over max_epochs


class Precision(str, Enum):
    """The arithmetic of each step's forward pass and loss (runners.closure.autocast)."""

    float32 = "float32"  # everything in the parameters' precision (exact; the default)
    bfloat16 = "bfloat16"  # forward and loss under torch.autocast(dtype=torch.bfloat16)


class WandbMode(str, Enum):
    auto = "auto"  # online when an account is configured, offline otherwise
    online = "online"
    offline = "offline"


@dataclass
class TrainerConfig:
    """The training loop: budget, schedule, evaluation, logging and checkpoint cadence.

    A run stops at whichever budget is reached first; at least one must be set.
    """

    batch_size: int = 1000
    max_epochs: int | None = 10
    # The papers' autoencoder budget is training seconds (500 s for MNIST). The clock counts
    # training steps only, synchronised on GPU; evaluation and warm start are outside it.
    max_time_s: float | None = None
    lr_schedule: LRSchedule = LRSchedule.constant
    lr_decay_epochs: list[int] = field(default_factory=list)
    lr_decay_factor: float = 0.1
    eval_every_epochs: int = 1
    eval_batch_size: int = 2000
    log_every_steps: int = 10
    loss_ema_decay: float = 0.9  # train/loss_ema <- decay * ema + (1 - decay) * loss (TNT code)
    checkpoint_every_epochs: int = 1
    # Optimizers with a warm_start() method (curvature statistics at the initial weights)
    # get this many batches before step 0; null means one full pass over the training set.
    warm_start_batches: int | None = None
    # false: no evaluation on the test split (tuning trials, runners.tune: never seen there)
    evaluate_test: bool = True
    # bfloat16: the forward pass and loss of every training step, second passes, warm start
    # and evaluation run under bfloat16 autocast; weights, gradients, curvature statistics,
    # inverses and updates stay float32 (README, "A single run"). Not the optimizers'
    # matmul_precision, which rounds the operands of their curvature products.
    precision: Precision = Precision.float32
    force: bool = False  # rerun a run whose record says completed or diverged
    # How the process behaves, not what it computes (neither is part of a run's identity):
    # a progress bar on stderr; null shows it when stderr is a terminal, so logs stay clean.
    progress_bar: bool | None = None
    # A run directory is locked while its run trains. Another process that finds it locked
    # (the same command twice, a requeued job while the old one still writes its
    # checkpoint) waits this many seconds for it, then leaves the run alone with a message.
    lock_wait_s: float = 60.0


@dataclass
class LoggerConfig:
    """Weights & Biases settings. Local run records are written whatever this says."""

    wandb: bool = True
    mode: WandbMode = WandbMode.auto
    project: str = "sobench"
    entity: str | None = None
    # How long an online start may take before the run falls back to offline logging.
    init_timeout_s: float = 60.0


@dataclass
class PathsConfig:
    """Where things live. Not part of a run's identity (see runners.run_identity)."""

    runs_dir: str = "runs"
    data_dir: str = "datasets"


@dataclass
class TuningConfig:
    """Set by runners.tune on the runs it launches, never by hand: which study a run belongs
    to and as what. A trial is ranked on the validation split; a final run reruns the study's
    best setting with another seed and is what the analysis compares."""

    study: str | None = None  # null (every field): not a tuning run
    role: str | None = None  # trial | final (contract.tuning)
    trial: int | None = None  # a trial's number in its study
    trials: int | None = None  # final runs: the study's budget K (trials)
    sampler: str | None = None  # final runs: how the trials were drawn (qmc, tpe, grid)
    space: str | None = None  # final runs: the search space's name (conf/search/)


@dataclass
class Config:
    """The top level. `model` and `optimizer` are open groups (their `_target_` decides)."""

    seed: int = 0
    device: str = "auto"  # auto: cuda when available, else cpu
    model: Any = MISSING
    dataset: DatasetConfig = MISSING
    optimizer: Any = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)


def register_configs() -> None:
    """Store the top-level schema. conf/config.yaml lists `base_config` first in its defaults,
    so every group file merges onto a typed node and is validated as it merges."""
    ConfigStore.instance().store(name="base_config", node=Config)
