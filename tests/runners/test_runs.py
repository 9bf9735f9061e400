"""Real training runs through `python -m runners.train` on synthetic data: every optimizer
config, any torch.optim class from the command line, the run records, budgets, schedules,
skip and force."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tests.conftest import CONF_DIR, read_metrics, read_summary, run_dirs

RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json", "environment.json", "checkpoint.pt")
STEP_KEYS = {"step", "epoch", "train/loss", "train/loss_ema", "time/train_s", "lr"}
EPOCH_KEYS = {
    "step",
    "epoch",
    "train/full_loss",
    "test/loss",
    "test/accuracy",
    "train/loss_ema",
    "time/train_s",
    "time/process_s",
    "time/eval_s",
    "model/weight_sq_norm",
    "mem/peak_bytes",
}
OPTIMIZER_CONFIGS = sorted(path.stem for path in (CONF_DIR / "optimizer").glob("*.yaml"))


def epoch_records(metrics: list[dict]) -> list[dict]:
    return [record for record in metrics if "train/full_loss" in record]


def test_every_optimizer_config_trains(train_quick, tmp_path: Path) -> None:
    result = train_quick(f"optimizer={','.join(OPTIMIZER_CONFIGS)}", multirun=True)
    assert result.returncode == 0, result.stderr
    by_optimizer = {read_summary(d)["optimizer"]: d for d in run_dirs(tmp_path / "runs")}
    assert sorted(by_optimizer) == OPTIMIZER_CONFIGS
    for name, run_dir in by_optimizer.items():
        for file in RUN_FILES:
            assert (run_dir / file).is_file(), (name, file)
        summary = read_summary(run_dir)
        assert summary["status"] == "completed"
        assert summary["steps"] == 2 * summary["steps_per_epoch"] == 16  # 512 // 64, 2 epochs
        evaluations = epoch_records(read_metrics(run_dir))
        assert [record["epoch"] for record in evaluations] == [0.0, 1.0, 2.0]
        assert evaluations[-1]["train/full_loss"] < evaluations[0]["train/full_loss"], name


def test_metric_names(train_quick, tmp_path: Path) -> None:
    assert train_quick().returncode == 0
    (run_dir,) = run_dirs(tmp_path / "runs")
    metrics = read_metrics(run_dir)
    steps = [record for record in metrics if "train/loss" in record]
    assert [record["step"] for record in steps] == list(range(2, 17, 2))  # log_every_steps=2
    for record in steps:
        assert set(record) >= STEP_KEYS
    for record in epoch_records(metrics):
        assert EPOCH_KEYS - {"train/loss_ema"} <= set(record)
        assert record["time/eval_s"] > 0
        assert record["model/weight_sq_norm"] > 0
    assert set(epoch_records(metrics)[-1]) >= EPOCH_KEYS
    times = [record["time/train_s"] for record in metrics]
    assert times == sorted(times) and times[-1] > 0  # cumulative training clock
    summary = read_summary(run_dir)
    assert summary["time"]["train_s"] == pytest.approx(times[-1])
    assert sum(summary["time"]["phases_s"].values()) == pytest.approx(
        summary["time"]["train_s"], rel=0.05
    )
    # the machine's load beside the clock, so that a busy machine's timings can be told
    load = summary["machine_load"]
    assert load["cpu_count"] == os.cpu_count() and load["samples"] == 1 + 3  # start, 3 evals
    assert 0 <= load["load_1min_mean"] <= load["load_1min_max"]
    assert summary["time"]["process_s"] > 0  # CPU seconds of the process, beside train_s
    environment = json.loads((run_dir / "environment.json").read_text())
    assert {"torch", "cuda", "device", "device_name", "cpu_threads", "git_commit"} <= set(
        environment
    )
    assert environment["load_1min_at_start"] >= 0
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["optimizer"]["lr"] == 0.01 and config["paths"]["runs_dir"] == str(
        tmp_path / "runs"
    )


def test_any_torch_optimizer_from_the_command_line(train_quick, tmp_path: Path) -> None:
    result = train_quick("optimizer._target_=torch.optim.RMSprop", "+optimizer.alpha=0.9")
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path / "runs")
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["optimizer"] == "rmsprop"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["optimizer"]["_target_"] == "torch.optim.RMSprop"
    assert config["optimizer"]["alpha"] == 0.9


def test_time_budget_stops_mid_epoch(train_quick, tmp_path: Path) -> None:
    result = train_quick(
        "trainer.max_epochs=null", "trainer.max_time_s=0.02", "dataset.train_size=8192"
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path / "runs")
    summary = read_summary(run_dir)
    assert summary["status"] == "completed"
    assert summary["time"]["train_s"] >= 0.02
    assert 0 < summary["steps"] < summary["steps_per_epoch"]  # stopped inside epoch 1
    last = epoch_records(read_metrics(run_dir))[-1]
    assert last["step"] == summary["steps"] and 0 < last["epoch"] < 1


def test_step_decay_schedule(train_quick, tmp_path: Path) -> None:
    result = train_quick(
        "trainer.max_epochs=3", "trainer.lr_schedule=step", "trainer.lr_decay_epochs=[1,2]"
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path / "runs")
    steps = [record for record in read_metrics(run_dir) if "train/loss" in record]
    lr_by_epoch = {int((record["step"] - 1) // 8): record["lr"] for record in steps}
    assert lr_by_epoch == {0: 0.01, 1: pytest.approx(0.001), 2: pytest.approx(0.0001)}


@pytest.mark.slow  # make test-slow; its siblings here stay in make test (15-minute budget)
def test_completed_run_is_skipped_unless_forced(train_quick, tmp_path: Path) -> None:
    assert train_quick().returncode == 0
    (run_dir,) = run_dirs(tmp_path / "runs")
    first = (run_dir / "metrics.jsonl").read_text()
    again = train_quick()
    assert again.returncode == 0 and "skipped" in again.stdout
    assert (run_dir / "metrics.jsonl").read_text() == first
    forced = train_quick("trainer.force=true")
    assert forced.returncode == 0
    assert run_dirs(tmp_path / "runs") == [run_dir]  # force is not part of the identity
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["attempt"] == 1
    assert summary["wandb_id"] == f"{summary['run_id']}-1"
    assert len(read_metrics(run_dir)) == len(first.splitlines())  # rerun, not appended
