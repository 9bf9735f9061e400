"""Loading from W&B gives the same tidy sweep as the run directories, checked on a real
sweep (one run diverges, one completes) logged offline by the runner: through wandb's own
reader of the offline files, and through wandb's public API classes answering from server
responses built from those files (tests/analysis/wandb_replay.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from wandb.apis.public import Runs

from analysis.load import load
from analysis.sweep import SourceError, Sweep
from analysis.wandb_source import read_offline_run, runs_from_public_api, sweep_from_wandb
from tests.analysis.wandb_replay import ReplayService, responses_from_offline
from tests.conftest import QUICK, run_train

# what W&B does not hold (summary.json's parameter count) or holds only at the last
# evaluation (process and phase times of a run that diverged between evaluations), or not at
# all (environment.json, whose device the local runs have)
NOT_IN_WANDB = ("parameters", "location", "time.process_s", "device")


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wandb") / "runs"
    result = run_train(
        *QUICK, "logger=wandb", "optimizer.lr=1e6,0.01", runs_dir=root, multirun=True
    )
    assert result.returncode == 0, result.stderr
    return root


def comparable_runs(sweep: Sweep) -> pd.DataFrame:
    runs = sweep.runs.set_index("run_id").sort_index()
    keep = [c for c in runs if c not in NOT_IN_WANDB and not c.startswith("time.phases_s")]
    return runs[keep]


def assert_same_sweep(local: Sweep, wandb: Sweep) -> None:
    assert sorted(local.runs["status"]) == ["completed", "diverged"]
    local_runs, wandb_runs = comparable_runs(local), comparable_runs(wandb)
    assert set(local_runs.columns) <= set(wandb.runs.columns)
    pd.testing.assert_frame_equal(
        local_runs, wandb_runs[local_runs.columns], check_dtype=False, check_exact=False
    )
    key = ["run_id", "step"]
    local_metrics = local.metrics.sort_values(key).reset_index(drop=True)
    wandb_metrics = wandb.metrics.sort_values(key).reset_index(drop=True)
    assert set(local_metrics.columns) == set(wandb_metrics.columns)
    pd.testing.assert_frame_equal(
        local_metrics, wandb_metrics[local_metrics.columns], check_dtype=False
    )


def test_offline_run_files_load_like_the_run_directories(runs_dir: Path) -> None:
    local = load(runs_dir)
    wandb = load(f"wandb-offline:{runs_dir}")
    assert wandb.source == f"wandb-offline:{runs_dir}"
    assert_same_sweep(local, wandb)
    diverged = wandb.runs.set_index("status").loc["diverged"]
    assert diverged["diverged_at_step"] == diverged["steps"] >= 1


def test_public_api_loads_like_the_run_directories(runs_dir: Path) -> None:
    offline = sorted(runs_dir.rglob("offline-run-*"))
    assert len(offline) == 2
    service = ReplayService([responses_from_offline(read_offline_run(f)) for f in offline])
    api_runs = Runs(service, "team", "sobench", per_page=100, lazy=False)
    wandb = sweep_from_wandb("wandb:team/sobench", runs_from_public_api(api_runs, "team/sobench"))
    assert service.queries.count("Runs") == 1 and service.queries.count("RunHistoryKeys") == 2
    assert_same_sweep(load(runs_dir), wandb)
    assert all(wandb.runs["location"].str.startswith("wandb:team/sobench/"))


def test_a_run_without_the_harness_status_takes_it_from_the_wandb_state(runs_dir: Path) -> None:
    """A run killed before it could write its status (a crashed W&B run) is kept as
    unfinished, `running`, as the local records of a killed run say."""
    offline = sorted(runs_dir.rglob("offline-run-*"))
    attrs, history = responses_from_offline(read_offline_run(offline[0]))
    attrs = {**attrs, "state": "crashed", "summaryMetrics": "{}"}
    api_runs = Runs(ReplayService([(attrs, history)]), "team", "sobench", lazy=False)
    wandb = sweep_from_wandb("wandb:team/sobench", runs_from_public_api(api_runs, "team/sobench"))
    assert list(wandb.runs["status"]) == ["running"]
    assert len(wandb.metrics) == len(history)  # its records are kept


def test_a_live_project_without_a_login_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    """`--runs wandb:entity/project` on a machine with no W&B account configured."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no wandb settings
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    with pytest.raises(SourceError, match=r"W&B project 'team/sobench': .*wandb login"):
        load("wandb:team/sobench")
