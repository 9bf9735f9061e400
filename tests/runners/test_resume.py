"""Kill and resume: a run killed with SIGKILL, at any point, then started again with the same
command, ends with exactly the records of an uninterrupted run (on CPU): resumed from its
newest readable checkpoint, or restarted from step 0 with one line saying so when there is
none; never a duplicate, out-of-order or missing record, never a traceback."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.conftest import read_metrics, read_summary, run_dirs, run_train
from tests.runners.processes import (
    EPOCHS,
    RESUMABLE,
    STEPS_PER_EPOCH,
    TrainProcess,
    assert_no_duplicate_or_gap,
    has_checkpoint,
    metric_lines,
)


def kill(runs_dir: Path, after_checkpoints: int) -> Path:
    """Start the run; SIGKILL it after `after_checkpoints` checkpoints (0: before the first)
    and one more metric record (which the resumed run must discard). Returns the run dir."""
    run = TrainProcess.start(*RESUMABLE, runs_dir=runs_dir)
    try:
        if after_checkpoints:
            run.wait_for(lambda: has_checkpoint(runs_dir), "a checkpoint")
            if after_checkpoints > 1:
                run.wait_for(lambda: any(runs_dir.rglob("checkpoint.prev.pt")), "two")
        else:
            run.wait_for(lambda: metric_lines(runs_dir) >= 2, "a step record")
        lines = metric_lines(runs_dir)
        run.wait_for(lambda: metric_lines(runs_dir) > lines, "a record after it")
    finally:
        os.kill(run.process.pid, signal.SIGKILL)
        run.wait()
    (run_dir,) = run_dirs(runs_dir)
    assert read_summary(run_dir)["status"] == "running"  # the kill left it unfinished
    return run_dir


def resume(runs_dir: Path, reference: list[dict]) -> str:
    """Rerun the command; check it completed with the uninterrupted records; its output."""
    result = run_train(*RESUMABLE, runs_dir=runs_dir)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    (run_dir,) = run_dirs(runs_dir)
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["steps"] == EPOCHS * STEPS_PER_EPOCH
    assert_no_duplicate_or_gap(read_metrics(run_dir), reference)
    return output


def test_killed_run_resumes_to_identical_metrics(tmp_path: Path, reference: list[dict]) -> None:
    kill(tmp_path / "runs", after_checkpoints=1)
    assert "resuming" in resume(tmp_path / "runs", reference)


@pytest.mark.slow  # make test-slow; its siblings here stay in make test (15-minute budget)
def test_kill_before_the_first_checkpoint_restarts_cleanly(
    tmp_path: Path, reference: list[dict]
) -> None:
    run_dir = kill(tmp_path / "runs", after_checkpoints=0)
    assert not (run_dir / "checkpoint.pt").exists() and read_metrics(run_dir)
    output = resume(tmp_path / "runs", reference)
    assert "no readable checkpoint to resume from: restarting from step 0" in output


@pytest.mark.slow  # make test-slow; its siblings here stay in make test (15-minute budget)
def test_a_truncated_checkpoint_falls_back_to_the_previous_one(
    tmp_path: Path, reference: list[dict]
) -> None:
    run_dir = kill(tmp_path / "runs", after_checkpoints=2)
    newest = run_dir / "checkpoint.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    output = resume(tmp_path / "runs", reference)
    assert "checkpoint unreadable: checkpoint.pt" in output
    assert "resuming" in output and "from checkpoint.prev.pt" in output


def test_no_readable_checkpoint_restarts_cleanly_with_one_line(
    tmp_path: Path, reference: list[dict]
) -> None:
    """The newest overwritten with random bytes, the previous truncated."""
    run_dir = kill(tmp_path / "runs", after_checkpoints=2)
    (run_dir / "checkpoint.pt").write_bytes(os.urandom(4096))
    previous = run_dir / "checkpoint.prev.pt"
    previous.write_bytes(previous.read_bytes()[:1000])
    output = resume(tmp_path / "runs", reference)
    assert output.count("checkpoint unreadable") == 2
    assert "no readable checkpoint to resume from: restarting from step 0" in output


@pytest.mark.slow  # make test-slow; its siblings here stay in make test (15-minute budget)
def test_a_torn_last_metrics_line_is_left_out(tmp_path: Path, reference: list[dict]) -> None:
    """A kill in the middle of a write leaves half a line at the end of metrics.jsonl."""
    run_dir = kill(tmp_path / "runs", after_checkpoints=1)
    with (run_dir / "metrics.jsonl").open("a") as stream:
        stream.write('{"step": 999, "train/lo')
    assert "resuming" in resume(tmp_path / "runs", reference)
