"""Two processes on one run directory (the same command twice, or a requeued job while the
previous attempt still runs): the second waits for the first (trainer.lock_wait_s), then
skips the completed run; with no time to wait it leaves the run alone with one line. The
records are those of one uninterrupted run, never two interleaved."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import read_metrics, read_summary, run_dirs, run_train
from tests.runners.processes import (
    EPOCHS,
    RESUMABLE,
    STEPS_PER_EPOCH,
    TrainProcess,
    assert_no_duplicate_or_gap,
    metric_lines,
)


def test_a_second_process_waits_then_skips_the_completed_run(
    tmp_path: Path, reference: list[dict]
) -> None:
    runs = tmp_path / "runs"
    first = TrainProcess.start(*RESUMABLE, runs_dir=runs, name="first")
    first.wait_for(lambda: metric_lines(runs) >= 2, "training")
    second = TrainProcess.start(*RESUMABLE, runs_dir=runs, name="second")
    assert first.wait() == 0, first.output()
    assert second.wait() == 0, second.output()
    assert "is already completed: skipped" in second.output()
    (run_dir,) = run_dirs(runs)
    assert read_summary(run_dir)["status"] == "completed"
    assert_no_duplicate_or_gap(read_metrics(run_dir), reference)


@pytest.mark.slow  # make test-slow; its siblings here stay in make test (15-minute budget)
def test_without_time_to_wait_the_second_process_leaves_the_run_alone(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = TrainProcess.start(*RESUMABLE, runs_dir=runs, name="first")
    first.wait_for(lambda: metric_lines(runs) >= 2, "training")
    second = run_train(*RESUMABLE, "trainer.lock_wait_s=0", runs_dir=runs)
    output = second.stdout + second.stderr
    assert second.returncode == 1, output
    assert "is in use by pid" in output and "the same run is training in another process" in output
    assert "Traceback" not in output
    assert first.wait() == 0, first.output()
    (run_dir,) = run_dirs(runs)
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["steps"] == EPOCHS * STEPS_PER_EPOCH
    steps = [record["step"] for record in read_metrics(run_dir) if "train/loss" in record]
    assert steps == sorted(set(steps))  # one writer: every step record once, in order
