"""Kill and resume: a run killed with SIGKILL after its first checkpoint, then started again
with the same command, logs exactly the numbers of an uninterrupted run (on CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import QUICK, REPO, read_metrics, read_summary, run_dirs, run_train

# The MNIST autoencoder on synthetic data: slow enough per epoch to be killed mid-run.
RESUMABLE = (
    *QUICK,
    "model=mnist_ae",
    "dataset.train_size=2048",
    "trainer.max_epochs=8",
    "trainer.log_every_steps=5",
)
TIMING_KEYS = ("time/", "mem/")


def comparable(metrics: list[dict]) -> list[dict]:
    """Records without timings and memory, which differ between any two runs."""
    return [
        {key: value for key, value in record.items() if not key.startswith(TIMING_KEYS)}
        for record in metrics
    ]


def kill_after_first_checkpoint(runs_dir: Path) -> int:
    """Start the run, wait for its first checkpoint and for one more metric record logged
    after it (which the resumed run must discard), then SIGKILL it. Returns the number of
    metric lines at the kill."""
    command = [sys.executable, "-m", "runners.train", f"paths.runs_dir={runs_dir}", *RESUMABLE]
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120

    def wait_for(condition) -> None:
        while not condition():
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run made no progress within 120 s"
            time.sleep(0.005)

    def metric_lines() -> int:
        paths = list(runs_dir.rglob("metrics.jsonl"))
        return len(paths[0].read_text().splitlines()) if paths else 0

    try:
        wait_for(lambda: bool(list(runs_dir.rglob("checkpoint.pt"))))
        at_checkpoint = metric_lines()
        wait_for(lambda: metric_lines() > at_checkpoint)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    return metric_lines()


def test_killed_run_resumes_to_identical_metrics(tmp_path: Path) -> None:
    uninterrupted = run_train(*RESUMABLE, runs_dir=tmp_path / "uninterrupted")
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    (reference_dir,) = run_dirs(tmp_path / "uninterrupted")

    lines_at_kill = kill_after_first_checkpoint(tmp_path / "killed")
    (killed_dir,) = run_dirs(tmp_path / "killed")
    assert killed_dir.name == reference_dir.name  # same config, same run id
    killed = read_summary(killed_dir)
    assert killed["status"] == "running"  # the kill left it unfinished
    assert killed["epochs"] < 8
    assert lines_at_kill < len(read_metrics(reference_dir))

    resumed = run_train(*RESUMABLE, runs_dir=tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    summary = read_summary(killed_dir)
    assert summary["status"] == "completed" and summary["steps"] == 8 * 32
    reference, metrics = read_metrics(reference_dir), read_metrics(killed_dir)
    assert len(metrics) == len(reference)
    assert comparable(metrics) == comparable(reference)  # bit-identical numbers
