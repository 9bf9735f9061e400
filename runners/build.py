"""Build everything a run needs from its config, checking all of it before training starts.

Order matters for the user: the cheap checks come first (budget, model/data pairing, argument
names), then the data are loaded, then the model and optimizer are constructed. Anything wrong
raises UserInputError with a message that names the config key and what to do, never a
traceback from deep inside torch.

Protocol for optimizer classes: the constructor takes the parameters first, like torch.optim,
and, when its signature has a `model` argument, also receives the model (for curvature hooks
registered at start-up). Any torch.optim.Optimizer runs this way from a config file alone.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from data.augment import make_augmentation
from data.errors import DataUnavailableError
from data.sources import load_splits
from data.tensors import ShuffledBatches, Split
from models.likelihoods import Likelihood, make_likelihood
from models.task import Task
from runners.config_schema import LRSchedule, TrainerConfig
from runners.distributed import SINGLE, World
from runners.schedules import build_scheduler

HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


class UserInputError(ValueError):
    """Bad input a user can fix; raised before any training."""


@dataclass
class EvalSet:
    """A split prepared for evaluation: inputs and the targets the loss compares with."""

    inputs: Tensor
    targets: Tensor


@dataclass
class BuiltRun:
    device: torch.device
    model: nn.Module
    likelihood: Likelihood
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    batches: ShuffledBatches
    train_eval: EvalSet
    test_eval: EvalSet | None  # None: trainer.evaluate_test=false
    valid_eval: EvalSet | None  # None: no validation split (dataset.validation_size=0)
    task: Task


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"device={name} was asked for but CUDA is not available")
    return device


def check_trainer(cfg: TrainerConfig) -> None:
    problems = []
    if cfg.max_epochs is None and cfg.max_time_s is None:
        problems.append("set a budget: trainer.max_epochs and/or trainer.max_time_s")
    positive = {
        "batch_size": cfg.batch_size,
        "max_epochs": cfg.max_epochs,
        "max_time_s": cfg.max_time_s,
        "eval_every_epochs": cfg.eval_every_epochs,
        "eval_batch_size": cfg.eval_batch_size,
        "log_every_steps": cfg.log_every_steps,
        "checkpoint_every_epochs": cfg.checkpoint_every_epochs,
        "lr_decay_factor": cfg.lr_decay_factor,
        "warm_start_batches": cfg.warm_start_batches,
    }
    problems += [
        f"trainer.{key} must be positive, got {value}"
        for key, value in positive.items()
        if value is not None and not value > 0  # (nan is not > 0 either)
    ]
    problems += [
        f"trainer.{key} must be finite, got {value} (null means no limit)"
        for key, value in positive.items()
        if value is not None and value > 0 and not math.isfinite(value)
    ]
    if not 0.0 <= cfg.loss_ema_decay < 1.0:
        problems.append(f"trainer.loss_ema_decay must be in [0, 1), got {cfg.loss_ema_decay}")
    if cfg.lr_schedule == LRSchedule.step and not cfg.lr_decay_epochs:
        problems.append("trainer.lr_schedule=step needs trainer.lr_decay_epochs, e.g. [40,80]")
    if cfg.lr_schedule == LRSchedule.cosine and cfg.max_epochs is None:
        problems.append("trainer.lr_schedule=cosine needs trainer.max_epochs")
    if problems:
        raise UserInputError("; ".join(problems))


def locate_target(target: str, group: str) -> Any:
    """The class `<group>._target_` names, or UserInputError when it cannot be imported."""
    try:
        return get_object(target)
    except Exception as error:  # ImportError, AttributeError, ...: all mean "cannot import"
        raise UserInputError(f"{group}._target_={target} cannot be imported: {error}") from None


def _check_arguments(
    target: Callable[..., Any], node: DictConfig, group: str, supplied: tuple[str, ...]
) -> None:
    """Every key of `node` must be an argument of `target`, of the default's type."""
    signature = inspect.signature(target)
    parameters = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    settable = [name for name in parameters if name not in supplied and name != "self"]
    for key in node:
        if key in HYDRA_KEYS:
            continue
        if key in supplied:
            raise UserInputError(f"{group}.{key} is set by the harness; remove it from the config")
        if key not in parameters:
            if takes_any:
                continue
            raise UserInputError(
                f"{group}.{key} is not an argument of {node._target_}; "
                f"its arguments are: {', '.join(settable)}"
            )
        default = parameters[key].default
        value = node[key]
        if isinstance(default, bool) and not isinstance(value, bool):
            raise UserInputError(f"{group}.{key} must be true or false, got {value!r}")
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if isinstance(default, (int, float)) and not isinstance(default, bool) and not is_number:
            raise UserInputError(f"{group}.{key} must be a number, got {value!r}")
        # nan passes every `value > 0` check a constructor makes, and inf most of them
        default_finite = not isinstance(default, float) or math.isfinite(default)
        if is_number and not math.isfinite(value) and default_finite:
            raise UserInputError(f"{group}.{key} must be a finite number, got {value!r}")


def likelihood_for(task: Task, dataset: DictConfig, model_name: str, dataset_name: str) -> str:
    """The likelihood of a model/data pairing, or UserInputError when it cannot be posed."""
    if task == Task.classification:
        if dataset.num_classes is None:
            raise UserInputError(
                f"model={model_name} is a classifier but dataset={dataset_name} has no labels; "
                "pick an autoencoder model or a labelled data set"
            )
        return "cross_entropy"
    if dataset.reconstruction_likelihood is None:
        raise UserInputError(
            f"model={model_name} is an autoencoder but dataset={dataset_name} defines no "
            "reconstruction likelihood (its inputs are not meant to be reconstructed); "
            "pick a classifier model or an image data set in [0, 1]"
        )
    if dataset.normalization is not None or dataset.augmentation is not None:
        raise UserInputError(
            f"model={model_name} is an autoencoder: it reconstructs the inputs as loaded, but "
            f"dataset={dataset_name} normalises or augments them; set "
            "dataset.normalization=null and dataset.augmentation=null"
        )
    return str(OmegaConf.to_container(dataset, enum_to_str=True)["reconstruction_likelihood"])


def _targets(task: Task, split: Split) -> Tensor:
    if task == Task.classification:
        assert split.labels is not None
        return split.labels
    return split.inputs.flatten(1)  # a view: autoencoders reconstruct their flattened input


def _model_arguments(cfg: DictConfig, task: Task) -> dict[str, Any]:
    """What the harness gives a model: the data set's input shape, and classes to a classifier."""
    supplied: dict[str, Any] = {"input_shape": list(cfg.dataset.input_shape)}
    if task == Task.classification:
        supplied["num_classes"] = int(cfg.dataset.num_classes)
    return supplied


def _model(cfg: DictConfig, supplied: dict[str, Any], model_name: str) -> nn.Module:
    try:
        return instantiate(cfg.model, **supplied)
    except Exception as error:
        # Hydra wraps the constructor's error; the constructor's own message is the useful one
        reason = error.__cause__ if isinstance(error, InstantiationException) else None
        raise UserInputError(f"model={model_name} could not be built: {reason or error}") from error


def _optimizer_target(cfg: DictConfig) -> tuple[Callable[..., Any], bool]:
    """The optimizer class, checked against its config; and whether it takes the model."""
    if "_target_" not in cfg.optimizer:
        raise UserInputError("optimizer._target_ is missing: name the optimizer class")
    target = locate_target(cfg.optimizer._target_, "optimizer")
    parameters = list(inspect.signature(target).parameters)
    wants_model = "model" in parameters
    supplied = parameters[:1] + (["model"] if wants_model else [])  # the params, the model
    _check_arguments(target, cfg.optimizer, "optimizer", tuple(supplied))
    return target, wants_model


def _optimizer(cfg: DictConfig, model: nn.Module, wants_model: bool) -> torch.optim.Optimizer:
    node = OmegaConf.to_container(cfg.optimizer, resolve=True)
    node["_partial_"] = True
    try:
        factory = instantiate(node)
        optimizer = factory(model.parameters(), **({"model": model} if wants_model else {}))
    except (ValueError, TypeError, RuntimeError) as error:
        raise UserInputError(f"optimizer {cfg.optimizer._target_}: {error}") from error
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise UserInputError(
            f"optimizer._target_={cfg.optimizer._target_} is not a torch.optim.Optimizer"
        )
    return optimizer


def build_optimizer(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The configured optimizer (cfg.optimizer) for `model`, checked as a run checks it
    (UserInputError); for tools that build an optimizer without a run (runners.bench)."""
    _, wants_model = _optimizer_target(cfg)
    return _optimizer(cfg, model, wants_model)


def build_run(
    cfg: DictConfig, model_name: str, dataset_name: str, world: World = SINGLE
) -> BuiltRun:
    """Everything a run needs, checked; raises UserInputError before any training. In a
    data-parallel run (`world`) on this rank's device, with this rank's slice of every
    mini-batch."""
    check_trainer(cfg.trainer)
    device = resolve_device(cfg.device)
    if world.distributed and world.device is not None and device.type == world.device.type:
        device = world.device  # cuda:LOCAL_RANK (runners.distributed)
    model_class = locate_target(cfg.model._target_, "model")
    task = getattr(model_class, "TASK", None)
    if not isinstance(task, Task):
        raise UserInputError(
            f"model._target_={cfg.model._target_} must declare TASK (models.task.Task)"
        )
    likelihood = make_likelihood(likelihood_for(task, cfg.dataset, model_name, dataset_name))
    model_arguments = _model_arguments(cfg, task)
    _check_arguments(model_class, cfg.model, "model", tuple(model_arguments))
    _, optimizer_wants_model = _optimizer_target(cfg)

    try:
        splits = load_splits(cfg.dataset, Path(cfg.paths.data_dir))
    except DataUnavailableError as error:
        raise UserInputError(str(error)) from error
    except ValueError as error:
        raise UserInputError(f"dataset={dataset_name}: {error}") from error
    train, test = splits.train.to(device), splits.test.to(device)
    valid = None if splits.validation is None else splits.validation.to(device)
    if list(train.inputs.shape[1:]) != list(cfg.dataset.input_shape):
        raise UserInputError(
            f"dataset={dataset_name} declares input_shape {list(cfg.dataset.input_shape)} but "
            f"its data have shape {list(train.inputs.shape[1:])}"
        )
    train_targets = _targets(task, train)
    try:
        augmentation = make_augmentation(cfg.dataset)
    except ValueError as error:
        raise UserInputError(f"dataset={dataset_name}: {error}") from error
    try:
        batches = ShuffledBatches(
            train.inputs,
            train_targets,
            cfg.trainer.batch_size,
            seed=cfg.seed,
            augmentation=augmentation,
            rank=world.rank,
            world_size=world.size,
        )
    except ValueError as error:
        raise UserInputError(f"trainer.batch_size: {error}") from error

    torch.manual_seed(cfg.seed)
    model = _model(cfg, model_arguments, model_name).to(device)
    optimizer = _optimizer(cfg, model, optimizer_wants_model)
    return BuiltRun(
        device=device,
        model=model,
        likelihood=likelihood,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg.trainer),
        batches=batches,
        train_eval=EvalSet(train.inputs, train_targets),
        test_eval=EvalSet(test.inputs, _targets(task, test)) if cfg.trainer.evaluate_test else None,
        valid_eval=None if valid is None else EvalSet(valid.inputs, _targets(task, valid)),
        task=task,
    )


def parameter_count(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())
