"""Search spaces: conf/search/<optimizer>.yaml, one per optimizer config.

    space:                 # sampled by the quasi-random and TPE samplers
      lr: {distribution: log_uniform, low: 1.0e-4, high: 1.0}
      damping: {distribution: log_uniform, low: 1.0e-3, high: 10.0}
      grafting: {distribution: categorical, choices: [none, adagrad]}
    grid:                  # tune.sampler=grid: every combination of these values
      lr: [1.0e-4, 3.0e-4, ..., 1.0]

Distributions: log_uniform and uniform (floats in [low, high]), int (integers in [low, high])
and categorical (one of `choices`). The first key of `space` is the optimizer's main
hyperparameter: the tuning figure scatters the trials against it. Every key is an argument of
the optimizer's constructor (the config's `_target_`), checked with `check_space` before any
trial runs, as are the ranges: a bad space is one message naming its key.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

SEARCH_DIR = Path(__file__).resolve().parents[2] / "conf" / "search"
DISTRIBUTIONS = ("log_uniform", "uniform", "int", "categorical")


class SearchSpaceError(ValueError):
    """A search space that cannot be searched; the message names the file and the key."""


@dataclass(frozen=True)
class SearchSpace:
    name: str
    path: Path
    distributions: dict[str, optuna.distributions.BaseDistribution]
    grid: dict[str, list[Any]]

    @property
    def main_hyperparameter(self) -> str:
        return next(iter(self.distributions))


def space_path(name: str) -> Path:
    """conf/search/<name>.yaml, or `name` itself when it is a path to a YAML file."""
    path = Path(name)
    return path if path.suffix in (".yaml", ".yml") else SEARCH_DIR / f"{name}.yaml"


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SearchSpaceError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _distribution(where: str, spec: Any) -> optuna.distributions.BaseDistribution:
    if not isinstance(spec, dict) or "distribution" not in spec:
        raise SearchSpaceError(
            f"{where} must be a mapping with a `distribution` ({', '.join(DISTRIBUTIONS)})"
        )
    kind = spec["distribution"]
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SearchSpaceError(f"{where}: categorical needs a non-empty list `choices`")
        return optuna.distributions.CategoricalDistribution(choices)
    if kind not in DISTRIBUTIONS:
        raise SearchSpaceError(
            f"{where}: unknown distribution {kind!r}; choose from {', '.join(DISTRIBUTIONS)}"
        )
    extra = set(spec) - {"distribution", "low", "high"}
    if extra:
        raise SearchSpaceError(f"{where}: {kind} takes low and high, not {sorted(extra)}")
    low, high = _number(f"{where}.low", spec.get("low")), _number(f"{where}.high", spec.get("high"))
    if not low < high:
        raise SearchSpaceError(f"{where}: empty range, low={low:g} must be below high={high:g}")
    if kind == "log_uniform" and low <= 0:
        raise SearchSpaceError(f"{where}: log_uniform needs low > 0, got low={low:g}")
    if kind == "int":
        if low != int(low) or high != int(high):
            raise SearchSpaceError(f"{where}: int needs integer bounds, got {low:g}, {high:g}")
        return optuna.distributions.IntDistribution(int(low), int(high))
    return optuna.distributions.FloatDistribution(low, high, log=kind == "log_uniform")


def load_space(name: str) -> SearchSpace:
    """The search space conf/search/<name>.yaml (or a YAML path), its ranges checked."""
    path = space_path(name)
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in SEARCH_DIR.glob("*.yaml")))
        raise SearchSpaceError(
            f"no search space {path}: add conf/search/{name}.yaml (available: {available}) or "
            "name one with tune.space=<name or path>"
        )
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(raw, dict) or not isinstance(raw.get("space"), dict) or not raw["space"]:
        raise SearchSpaceError(f"{path}: needs a non-empty mapping `space`")
    unknown = set(raw) - {"space", "grid"}
    if unknown:
        raise SearchSpaceError(f"{path}: unknown sections {sorted(unknown)} (space, grid)")
    distributions = {
        str(key): _distribution(f"{path.name}: space.{key}", spec)
        for key, spec in raw["space"].items()
    }
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict):
        raise SearchSpaceError(f"{path}: `grid` must map keys to lists of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SearchSpaceError(f"{path.name}: grid.{key} must be a non-empty list")
    return SearchSpace(path.stem, path, distributions, {str(k): v for k, v in grid.items()})


def check_space(space: SearchSpace, optimizer: DictConfig, target: Any) -> None:
    """Every key of the space and of its grid must be a constructor argument of the optimizer
    class `target` that a config may set (not the parameters or the model the harness passes),
    and a grid's or a log range's values must suit the argument's default (numbers for
    numbers)."""
    parameters = inspect.signature(target).parameters
    settable = [name for name in list(parameters)[1:] if name not in ("model", "self")]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for section, keys in (("space", space.distributions), ("grid", space.grid)):
        for key in keys:
            if key not in settable and not (takes_any and key not in parameters):
                raise SearchSpaceError(
                    f"{space.path.name}: {section}.{key} is not an argument of "
                    f"{optimizer._target_}; its arguments are: {', '.join(settable)}"
                )
    for key, values in space.grid.items():
        default = parameters[key].default if key in parameters else None
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        if numeric and not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        ):
            raise SearchSpaceError(f"{space.path.name}: grid.{key} must list numbers, got {values}")
        distribution = space.distributions.get(key)
        if (
            isinstance(distribution, optuna.distributions.FloatDistribution)
            and distribution.log
            and any(v <= 0 for v in values)
        ):
            raise SearchSpaceError(
                f"{space.path.name}: grid.{key} has values <= 0 for a log-uniform argument"
            )
