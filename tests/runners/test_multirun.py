"""A real Hydra multirun (`-m`): 2 optimizers x 2 seeds, each job its own run directory and
its own offline W&B run, whose history is read back from the W&B files themselves."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.conftest import read_metrics, read_summary, run_dirs
from tests.runners.wandb_files import history_rows, offline_runs, run_record, wandb_records


def test_sweep_of_two_optimizers_and_two_seeds(train_quick, tmp_path: Path) -> None:
    result = train_quick("logger=wandb", "optimizer=sgd,adam", "seed=0,1", multirun=True)
    assert result.returncode == 0, result.stderr
    dirs = run_dirs(tmp_path / "runs")
    assert len(dirs) == 4
    summaries = [read_summary(run_dir) for run_dir in dirs]
    assert sorted((s["optimizer"], s["seed"]) for s in summaries) == [
        ("adam", 0),
        ("adam", 1),
        ("sgd", 0),
        ("sgd", 1),
    ]
    assert all(run_dir.parent.name == "default" for run_dir in dirs)
    groups = {s["optimizer"]: set() for s in summaries}
    for run_dir, summary in zip(dirs, summaries, strict=True):
        assert summary["status"] == "completed"
        assert run_dir.name == summary["run_id"]
        groups[summary["optimizer"]].add(summary["group"])
        (offline,) = offline_runs(run_dir)  # one W&B run per job: never merged
        records = wandb_records(offline)
        run = run_record(records)
        assert run["run_id"] == summary["run_id"]
        assert run["run_group"] == summary["group"]
        assert set(run["tags"]) == {summary["optimizer"], "mlp", "synthetic"}
        logged = {r["step"]: r["train/loss"] for r in read_metrics(run_dir) if "train/loss" in r}
        in_wandb = {
            row["_step"]: row["train/loss"] for row in history_rows(records) if "train/loss" in row
        }
        assert in_wandb.keys() == logged.keys() and len(logged) == 8
        for step, loss in logged.items():
            assert in_wandb[step] == pytest.approx(loss, rel=1e-6)
        exits = [record for record in records if record["type"] == "exit"]
        assert len(exits) == 1  # finished properly
    # seeds of one setting share a W&B group; settings do not
    assert all(len(group) == 1 for group in groups.values())
    assert groups["sgd"] != groups["adam"]


def test_diverging_run_is_recorded_and_the_sweep_goes_on(train_quick, tmp_path: Path) -> None:
    result = train_quick("logger=wandb", "optimizer.lr=1e6,0.01", multirun=True)
    assert result.returncode == 0, result.stderr
    by_lr = {}
    for run_dir in run_dirs(tmp_path / "runs"):
        config = (run_dir / "config.yaml").read_text()
        by_lr["1e6" if "lr: 1000000.0" in config else "0.01"] = run_dir
    assert set(by_lr) == {"1e6", "0.01"}
    diverged = read_summary(by_lr["1e6"])
    assert diverged["status"] == "diverged"
    assert diverged["diverged_at_step"] is not None and diverged["diverged_at_step"] >= 1
    last = read_metrics(by_lr["1e6"])[-1]
    assert last["step"] == diverged["diverged_at_step"]
    assert not math.isfinite(last["train/loss"])
    (offline,) = offline_runs(by_lr["1e6"])
    exits = [record for record in wandb_records(offline) if record["type"] == "exit"]
    assert len(exits) == 1  # the W&B run was closed
    assert read_summary(by_lr["0.01"])["status"] == "completed"  # the sweep went on


@pytest.mark.slow  # make test-slow; its siblings here stay in make test (15-minute budget)
def test_online_start_failure_falls_back_to_offline(
    train_quick, tmp_path: Path, monkeypatch
) -> None:
    """An account is configured but the server cannot be reached (a compute node without
    network): the run logs offline instead of hanging or failing."""
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # refuses connections
    result = train_quick("logger=wandb", "logger.init_timeout_s=3")
    assert result.returncode == 0, result.stderr
    assert "W&B could not start online" in result.stdout
    (run_dir,) = run_dirs(tmp_path / "runs")
    assert read_summary(run_dir)["status"] == "completed"
    (offline,) = offline_runs(run_dir)
    assert any("train/loss" in row for row in history_rows(wandb_records(offline)))


def test_a_failing_job_is_one_line_and_the_sweep_ends_with_a_summary(
    train_quick, tmp_path: Path
) -> None:
    """Jobs: a bad learning rate (fails before training), a good one, a diverging one and,
    rerun, the good one again (skipped): the failure is said when it happens, the sweep goes
    on, and one summary counts every job, naming the failure's reason and run directory."""
    first = train_quick("optimizer.lr=0.01", multirun=True)
    assert first.returncode == 0, first.stdout + first.stderr
    result = train_quick("optimizer.lr=-1,0.01,1e6", multirun=True)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # a job failed
    assert "Traceback" not in output
    lines = result.stdout.splitlines()
    failure = next(i for i, line in enumerate(lines) if "Invalid learning rate: -1" in line)
    next_job = next(i for i, line in enumerate(lines) if "#1 :" in line)
    assert failure < next_job  # said when it failed, before the next job started
    (summary_index,) = [i for i, line in enumerate(lines) if line.startswith("sweep: 3 jobs:")]
    assert lines[summary_index] == "sweep: 3 jobs: 1 diverged, 1 skipped, 1 failed"
    failed_dir = next(
        d for d in run_dirs(tmp_path / "runs") if read_summary(d)["status"] == "failed"
    )
    assert lines[summary_index + 1] == (
        f"  failed: {failed_dir}: optimizer torch.optim.SGD: Invalid learning rate: -1"
    )
