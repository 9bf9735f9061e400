"""A runs directory on a read-only or full file system: one line and exit status 1, never a
traceback, and nothing lost: once the file system takes writes again, the same command
resumes (or restarts) the run to the records of an uninterrupted one.

The file systems are real: a small tmpfs mounted for the test (root only: CI and the
development machines run as root), full at its size, read-only by `mount -o remount,ro`."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import read_metrics, read_summary, run_dirs, run_train
from tests.runners.processes import (
    RESUMABLE,
    TrainProcess,
    assert_no_duplicate_or_gap,
    has_checkpoint,
)


class Tmpfs:
    def __init__(self, path: Path) -> None:
        self.path = path

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    """A 4 MB tmpfs: room for a run's small records, not for a 22 MB checkpoint."""
    path = tmp_path / "fs"
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode()}")
    try:
        yield Tmpfs(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def one_line_failure(result: subprocess.CompletedProcess[str], message: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert message in output
    assert "Traceback" not in output


def test_a_read_only_runs_directory_is_one_message(tmpfs: Tmpfs) -> None:
    tmpfs.remount("ro")
    result = run_train(*RESUMABLE, runs_dir=tmpfs.path / "runs")
    one_line_failure(
        result, f"cannot write run records under {tmpfs.path / 'runs'}: Read-only file system"
    )


@pytest.mark.slow  # make test-slow; its siblings here stay in make test (15-minute budget)
def test_a_runs_directory_that_turns_read_only_loses_nothing(
    tmpfs: Tmpfs, reference: list[dict]
) -> None:
    """Killed after a checkpoint, the next attempt finds the file system read-only (a
    file system cannot become read-only under a process that writes to it)."""
    tmpfs.remount("size=200m")
    runs = tmpfs.path / "runs"
    run = TrainProcess.start(*RESUMABLE, runs_dir=runs)
    run.wait_for(lambda: has_checkpoint(runs), "a checkpoint")
    run.signal(signal.SIGKILL)
    tmpfs.remount("ro")
    one_line_failure(run_train(*RESUMABLE, runs_dir=runs), "Read-only file system")
    tmpfs.remount("rw")
    resumed = run_train(*RESUMABLE, runs_dir=runs)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming" in resumed.stdout
    assert_no_duplicate_or_gap(read_metrics(run_dirs(runs)[0]), reference)


def test_a_full_disk_at_the_checkpoint_loses_nothing(tmpfs: Tmpfs, reference: list[dict]) -> None:
    runs = tmpfs.path / "runs"
    result = run_train(*RESUMABLE, runs_dir=runs)
    one_line_failure(result, "No space left on device")
    assert "rerun the same command" in result.stdout
    (run_dir,) = run_dirs(runs)
    summary = read_summary(run_dir)
    assert summary["status"] == "failed" and "No space left on device" in summary["error"]
    tmpfs.remount("size=200m")  # space freed
    resumed = run_train(*RESUMABLE, runs_dir=runs)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "restarting from step 0" in resumed.stdout  # no checkpoint had been written
    assert_no_duplicate_or_gap(read_metrics(run_dir), reference)
