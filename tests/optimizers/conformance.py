"""The conformance table: every optimizer of the project, one row each.

In the style of torch's OptimizerInfo (torch/testing/_internal/common_optimizers.py) and
optax's contrib/_common_test.py: tests/optimizers/test_conformance.py runs the same generic
tests over every row (its YAML builds through Hydra, the loss falls on a tiny problem, invalid
arguments raise the expected messages, a state_dict round trip gives bit-identical next steps,
CPU and GPU agree). Adding an optimizer to the project = one class, one YAML in
conf/optimizer/, one row here.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from optimizers.examples.diagonal import DiagonalFisher
from optimizers.first_order import SGDW, AdamOnMomentum, RMSpropOnMomentum
from optimizers.kbfgs import KBFGS
from optimizers.kfac import KFAC
from optimizers.shampoo import Shampoo
from optimizers.tengrad import TENGraD
from optimizers.tnt import TNT


@dataclass(frozen=True)
class Invalid:
    """Constructor settings that must raise ValueError with `message` in it."""

    settings: dict[str, Any]
    message: str


@dataclass(frozen=True)
class OptimizerInfo:
    name: str  # its config: conf/optimizer/<name>.yaml
    cls: type[torch.optim.Optimizer]
    # settings under which the loss falls on the tiny problem (tests/optimizers/problems.py)
    settings: dict[str, Any]
    invalid: tuple[Invalid, ...]
    # settings that make the steps independent of random draws (sampled labels), so that
    # CPU and GPU runs can be compared
    deterministic: dict[str, Any] = field(default_factory=dict)
    # closure calls on the first step: 2 for a method with a second pass (K-BFGS)
    closure_calls: int = 1

    def build(self, model: nn.Module, **overrides: Any) -> torch.optim.Optimizer:
        """The optimizer on `model`'s parameters, given the model when it asks for one."""
        settings = {**self.settings, **overrides}
        if "model" in inspect.signature(self.cls).parameters:
            settings["model"] = model
        return self.cls(model.parameters(), **settings)


def _update_invalid() -> tuple[Invalid, ...]:
    """The arguments of the shared update rule (optimizers.base): every curvature method's."""
    return (
        Invalid({"lr": -0.1}, "Invalid learning rate: -0.1"),
        Invalid({"momentum": 1.5}, "Invalid momentum value: 1.5 (must be in [0, 1))"),
        Invalid({"momentum_dampening": -0.1}, "Invalid momentum_dampening value: -0.1"),
        Invalid({"weight_decay": -1.0}, "Invalid weight_decay value: -1.0"),
        Invalid({"l2": -1e-5}, "Invalid l2 value: -1e-05"),
    )


def _shared_invalid() -> tuple[Invalid, ...]:
    """The arguments every curvature method with running statistics shares (optimizers.base)."""
    return (
        *_update_invalid(),
        Invalid({"curvature_every": 0}, "Invalid curvature_every value: 0 (must be a positive"),
        Invalid({"inverse_every": 2.5}, "Invalid inverse_every value: 2.5 (must be a positive"),
        Invalid({"warm_start": "yes"}, "Invalid warm_start value: 'yes'"),
    )


OPTIMIZERS: tuple[OptimizerInfo, ...] = (
    OptimizerInfo(
        "sgd",
        torch.optim.SGD,
        {"lr": 0.1, "momentum": 0.9},
        (
            Invalid({"lr": -0.1}, "Invalid learning rate: -0.1"),
            Invalid({"momentum": -0.5}, "Invalid momentum value: -0.5"),
            Invalid({"weight_decay": -1.0}, "Invalid weight_decay value: -1.0"),
        ),
    ),
    OptimizerInfo(
        "adam",
        torch.optim.Adam,
        {"lr": 0.03},
        (
            Invalid({"lr": -1.0}, "Invalid learning rate: -1.0"),
            Invalid({"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0"),
            Invalid({"eps": -1.0}, "Invalid epsilon value: -1.0"),
        ),
    ),
    OptimizerInfo(
        "kfac",
        KFAC,
        {"lr": 0.05, "damping": 0.1, "inverse_every": 2, "warm_start": False},
        (
            *_shared_invalid(),
            Invalid({"damping": -1.0}, "Invalid damping value: -1.0"),
            Invalid({"statistics_decay": 1.0}, "Invalid statistics_decay value: 1.0"),
            Invalid({"damping_split": "pi"}, "Invalid damping_split value: 'pi' (choose from"),
            Invalid({"kl_clip": 0.0}, "Invalid kl_clip value: 0.0"),
            Invalid({"matmul_precision": "fp8"}, "Invalid matmul_precision value: 'fp8' (choose"),
            Invalid({"fisher": "true"}, "Invalid fisher value: 'true' (choose from sampled, "),
        ),
        deterministic={"fisher": "empirical"},
    ),
    OptimizerInfo(
        "shampoo",
        Shampoo,
        {"lr": 0.02, "eps": 1e-3, "inverse_every": 2, "warm_start": False},
        (
            *_shared_invalid(),
            Invalid({"eps": 0.0}, "Invalid eps value: 0.0"),
            Invalid({"statistics_decay": 1.5}, "Invalid statistics_decay value: 1.5"),
            Invalid({"max_dim": 0}, "Invalid max_dim value: 0"),
            Invalid({"conv_reshape": "flat"}, "Invalid conv_reshape value: 'flat'"),
            Invalid({"grafting": "adam"}, "Invalid grafting value: 'adam' (choose from none,"),
            Invalid({"grafting_eps": -1.0}, "Invalid grafting_eps value: -1.0"),
            Invalid({"matmul_precision": "fp8"}, "Invalid matmul_precision value: 'fp8' (choose"),
            Invalid({"root_method": "svd"}, "Invalid root_method value: 'svd' (choose from eigh,"),
            Invalid({"early_inverses": 1}, "Invalid early_inverses value: 1 (must be true or"),
        ),
    ),
    OptimizerInfo(
        "tnt",
        TNT,
        {"lr": 0.002, "eps": 0.1, "inverse_every": 2, "warm_start": False},
        (
            *_shared_invalid(),
            Invalid({"eps": -0.1}, "Invalid eps value: -0.1"),
            Invalid({"statistics_decay": 1.0}, "Invalid statistics_decay value: 1.0"),
            Invalid({"conv_reshape": "flat"}, "Invalid conv_reshape value: 'flat'"),
            Invalid({"fisher": "exact"}, "Invalid fisher value: 'exact'"),
            Invalid({"matmul_precision": "fp8"}, "Invalid matmul_precision value: 'fp8' (choose"),
        ),
        deterministic={"fisher": "empirical"},
    ),
    OptimizerInfo(
        "tengrad",
        TENGraD,
        {"lr": 0.1, "damping": 1.0, "inverse_every": 2},
        (
            *_update_invalid(),  # no curvature_every, no warm start: no running statistics
            Invalid({"damping": 0.0}, "Invalid damping value: 0.0 (must be positive)"),
            Invalid({"inverse_every": 0}, "Invalid inverse_every value: 0 (must be a positive"),
            Invalid({"inverse_every": 2.5}, "Invalid inverse_every value: 2.5 (must be a positive"),
            Invalid(
                {"conv_gradients": "x"},
                "Invalid conv_gradients value: 'x' (choose from averaged, exact)",
            ),
            Invalid({"fisher": "true"}, "Invalid fisher value: 'true' (choose from sampled, "),
            Invalid(
                {"distributed_fisher": "both"},
                "Invalid distributed_fisher value: 'both' (choose from global, local)",
            ),
        ),
        deterministic={"fisher": "empirical"},
    ),
    *(
        OptimizerInfo(
            name,
            KBFGS,
            {"lr": 1.0, "damping": 0.3, "inverse_every": 2, "warm_start": False, **variant},
            (
                *_shared_invalid(),
                Invalid({"damping": 0.0}, "Invalid damping value: 0.0"),
                Invalid({"statistics_decay": 1.0}, "Invalid statistics_decay value: 1.0"),
                Invalid({"pair_decay": -0.5}, "Invalid pair_decay value: -0.5 (must be in"),
                Invalid({"powell_mu1": 1.0}, "Invalid powell_mu1 value: 1.0 (must be in (0, 1))"),
                Invalid({"inverse": "dfp"}, "Invalid inverse value: 'dfp' (choose from bfgs, "),
                Invalid({"history": -1}, "Invalid history value: -1 (must be a non-negative"),
                Invalid(
                    {"min_curvature_ratio": -1e-4}, "Invalid min_curvature_ratio value: -0.0001"
                ),
                Invalid({"matmul_precision": "fp8"}, "Invalid matmul_precision value: 'fp8'"),
                Invalid(
                    {"curvature_every": 2, "inverse_every": 3},
                    "Invalid inverse_every value: 3 (must be a multiple of curvature_every=2)",
                ),
            ),
            closure_calls=2,
        )
        for name, variant in (("kbfgs", {}), ("kbfgs_l", {"inverse": "lbfgs", "history": 3}))
    ),
    OptimizerInfo(
        "diagonal",
        DiagonalFisher,
        {"lr": 0.01, "eps": 0.1},
        (
            *_shared_invalid(),
            Invalid({"eps": 0.0}, "Invalid eps value: 0.0"),
            Invalid({"fisher": "exact"}, "Invalid fisher value: 'exact'"),
        ),
        deterministic={"fisher": "empirical"},
    ),
    OptimizerInfo("sgdw", SGDW, {"lr": 0.1}, _update_invalid()),
    OptimizerInfo(
        "adam_on_momentum",
        AdamOnMomentum,
        {"lr": 0.03},
        (
            *_update_invalid(),
            Invalid({"eps": 0.0}, "Invalid eps value: 0.0"),
            Invalid({"beta2": 1.0}, "Invalid beta2 value: 1.0 (must be in [0, 1))"),
            Invalid(
                {"momentum_dampening": 0.0},
                "Invalid momentum_dampening value: 0.0 (must equal momentum=0.9",
            ),
        ),
    ),
    OptimizerInfo(
        "rmsprop_on_momentum",
        RMSpropOnMomentum,
        {"lr": 0.01},
        (
            *_update_invalid(),
            Invalid({"eps": -1e-4}, "Invalid eps value: -0.0001"),
            Invalid({"beta2": -0.1}, "Invalid beta2 value: -0.1 (must be in [0, 1))"),
            Invalid({"warm_start": "yes"}, "Invalid warm_start value: 'yes'"),
        ),
    ),
)
