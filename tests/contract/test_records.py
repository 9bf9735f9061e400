"""The record contract: one list of what is not a run's identity serves the run directory and
the analysis, and metric lines torn by a kill are left out, never an error."""

from __future__ import annotations

import json

import pandas as pd

from analysis.selection import grid_columns
from analysis.sweep import build_sweep, run_row
from contract.records import NOT_IDENTITY_KEYS, is_identity_key, overloaded, parse_metric_lines
from runners.run_identity import run_id
from tests.conftest import QUICK, compose_config


def test_torn_and_damaged_lines_are_left_out() -> None:
    lines = [json.dumps({"step": 0, "train/loss": 1.0}), json.dumps({"step": 10, "lr": 0.1})]
    text = "\n".join([lines[0], "[1, 2]", lines[1], '{"step": 20, "train/lo'])
    parsed = parse_metric_lines(text)
    assert parsed.records == [json.loads(line) for line in lines]
    assert parsed.unreadable == 2
    nan = parse_metric_lines('{"step": 5, "train/loss": NaN}\n').records[0]["train/loss"]
    assert nan != nan  # the runner's NaN reads back as NaN


def test_identity_keys() -> None:
    assert is_identity_key("trainer.batch_size") and is_identity_key("optimizer.lr")
    assert not is_identity_key("logger.project") and not is_identity_key("paths.runs_dir")
    assert not any(is_identity_key(key) for key in NOT_IDENTITY_KEYS)


def test_run_directory_and_analysis_agree_on_identity() -> None:
    """Every key the contract leaves out: changing it keeps the run id, and the analysis
    neither splits the problem nor sees a grid over it; an identity key does both."""
    base = compose_config(*QUICK)
    reference = run_id(base, "default")
    for dotted, value in OTHER_VALUES.items():
        changed = compose_config(*QUICK, f"{dotted}={value}")
        assert run_id(changed, "default") == reference, dotted
    other = compose_config(*QUICK, "trainer.batch_size=32")
    assert run_id(other, "default") != reference

    rows = []
    for index, override in enumerate(["dataset.download=false", "dataset.download=true"]):
        config = {"dataset": {"download": "true" in override}, "optimizer": {"lr": 0.1}}
        summary = {"run_id": f"r{index}", "group": f"g{index}", "experiment": "e"}
        summary |= {"optimizer": "sgd", "model": "mlp", "dataset": "synthetic", "seed": 0}
        summary |= {"status": "completed"}
        rows.append((run_row(summary, config, f"/runs/r{index}"), []))
    sweep = build_sweep("test", rows)
    assert sweep.problems == ["e"]  # where the data came from does not split the problem
    assert grid_columns(sweep.runs) == []
    lr_differs = sweep.runs.assign(**{"config.optimizer.lr": pd.Series([0.1, 0.3])})
    assert grid_columns(lr_differs) == ["config.optimizer.lr"]


# a value other than the default for every key the contract leaves out of the identity
OTHER_VALUES = {
    "trainer.force": "true",
    "trainer.checkpoint_every_epochs": "3",
    "trainer.progress_bar": "false",
    "trainer.lock_wait_s": "5",
    "dataset.local_path": "/elsewhere/file.mat",
    "dataset.download": "false",
}


def test_every_key_left_out_is_exercised() -> None:
    assert set(OTHER_VALUES) == set(NOT_IDENTITY_KEYS)


def test_overloaded_means_busier_than_the_cores_on_average() -> None:
    assert overloaded({"cpu_count": 2, "load_1min_mean": 3.5, "load_1min_max": 4.0})
    assert not overloaded({"cpu_count": 2, "load_1min_mean": 1.9, "load_1min_max": 3.0})
    assert not overloaded(None) and not overloaded({})  # records written before it was kept
