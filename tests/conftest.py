"""Shared test helpers: real Hydra runs in subprocesses, config composition, run records."""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"

# Tests never talk to the W&B servers, whatever account the machine has.
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"

# A fast problem for runner tests: the small MLP on synthetic data, a few epochs.
QUICK = (
    "dataset=synthetic",
    "model=mlp",
    "trainer.batch_size=64",
    "trainer.max_epochs=2",
    "trainer.log_every_steps=2",
    "logger=none",
)


def run_train(
    *overrides: str, runs_dir: Path, multirun: bool = False, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`python -m runners.train [-m] paths.runs_dir=<runs_dir> overrides...` from the repo."""
    command = [sys.executable, "-m", "runners.train"]
    if multirun:
        command.append("-m")
    command += [f"paths.runs_dir={runs_dir}", *overrides]
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=os.environ.copy()
    )


def compose_config(*overrides: str) -> DictConfig:
    """The composed config, as `python -m runners.train overrides...` would see it: a copy
    of each distinct composition, made once per session. The suite composes ~900 times,
    ~480 of them distinct, and a composition takes ~0.2 s against ~0.015 s for the copy;
    interpolations stay unresolved in the copy, so environment variables are read when a
    test reads the value, as before, and no test writes under conf/."""
    return copy.deepcopy(_composed(overrides))


@functools.cache
def _composed(overrides: tuple[str, ...]) -> DictConfig:
    from runners.config_schema import register_configs
    from runners.run_identity import register_resolvers

    register_configs()
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def run_dirs(runs_dir: Path) -> list[Path]:
    return sorted(path.parent for path in Path(runs_dir).rglob("summary.json"))


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def read_metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` need CUDA; without it they are reported as skipped, never run."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def train_quick(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the quick problem with extra overrides into tmp_path/runs."""

    def train(*overrides: str, multirun: bool = False) -> subprocess.CompletedProcess[str]:
        return run_train(*QUICK, *overrides, runs_dir=tmp_path / "runs", multirun=multirun)

    return train
