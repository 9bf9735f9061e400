"""Stop signals: SIGTERM (what SLURM sends at preemption and at the time limit), Ctrl-C
(SIGINT) and a launcher's preemption signal checkpoint the run at the current step, record it
as `interrupted` and exit with 128 + the signal and one line (or through the launcher's own
handler); rerunning the same command resumes inside the epoch and ends with exactly the
records of an uninterrupted run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, read_metrics, read_summary, run_dirs, run_train
from tests.runners.processes import (
    RESUMABLE,
    TrainProcess,
    assert_no_duplicate_or_gap,
    has_checkpoint,
    metric_lines,
)


# SIGINT (ctrl-C) takes the same handler as SIGTERM, a cluster's stop signal: slow
@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGTERM, 143), pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)],
)
def test_a_stop_signal_checkpoints_and_the_rerun_resumes(
    tmp_path: Path, reference: list[dict], signum: int, status: int
) -> None:
    runs = tmp_path / "runs"
    run = TrainProcess.start(*RESUMABLE, runs_dir=runs)
    run.wait_for(lambda: has_checkpoint(runs), "a checkpoint")
    lines = metric_lines(runs)
    run.wait_for(lambda: metric_lines(runs) > lines, "a step record after it")
    assert run.signal(signum) == status
    output = run.output()
    assert "Traceback" not in output
    name = signal.Signals(signum).name
    assert f"{name} at step" in output and "rerun the same command to resume" in output

    (run_dir,) = run_dirs(runs)
    summary = read_summary(run_dir)
    assert summary["status"] == "interrupted" and summary["signal"] == name
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert checkpoint["progress"]["step"] == summary["steps"]  # checkpointed at that step

    resumed = run_train(*RESUMABLE, runs_dir=runs)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"at step {summary['steps']}" in resumed.stdout  # resumed at the signal's step
    assert read_summary(run_dir)["status"] == "completed"
    assert_no_duplicate_or_gap(read_metrics(run_dir), reference)


@pytest.mark.slow  # make test-slow; its siblings here stay in make test (15-minute budget)
def test_a_launchers_preemption_signal_checkpoints_then_reaches_the_launcher(
    tmp_path: Path, reference: list[dict]
) -> None:
    """submitit sends SIGUSR2 ahead of a SLURM time limit and requeues the job in its own
    handler: the run checkpoints at the step, then the launcher's handler runs."""
    runs, marker = tmp_path / "runs", tmp_path / "requeued"
    command = [
        sys.executable,
        "-m",
        "tests.runners.preempted_by_a_launcher",
        str(marker),
        f"paths.runs_dir={runs}",
        *RESUMABLE,
    ]
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 120
    while not has_checkpoint(runs):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGUSR2)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 255, output  # the launcher's handler ended it (exit -1)
    assert marker.read_text() == "SIGUSR2"  # and was called
    assert "SIGUSR2 at step" in output and "Traceback" not in output
    (run_dir,) = run_dirs(runs)
    summary = read_summary(run_dir)
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGUSR2"
    assert run_train(*RESUMABLE, runs_dir=runs).returncode == 0  # the requeued job resumes
    assert_no_duplicate_or_gap(read_metrics(run_dir), reference)
