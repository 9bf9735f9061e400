"""The progress bar: on a terminal, one bar per run with step, epoch, loss EMA and training
seconds; in a redirected log (SLURM's), none at all."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from tests.conftest import QUICK, REPO, run_train

RUN = (*QUICK, "trainer.max_epochs=3")


def run_on_a_terminal(*overrides: str, runs_dir: Path) -> str:
    """The run's stderr as a terminal shows it (a pseudo-terminal)."""
    master, slave = pty.openpty()
    # a terminal of 120 columns: a fresh pseudo-terminal has 0, where tqdm draws nothing
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    command = [sys.executable, "-m", "runners.train", f"paths.runs_dir={runs_dir}", *overrides]
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=slave, env=os.environ.copy()
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            process.kill()
            raise AssertionError("no output on the terminal within 120 s")
        try:
            data = os.read(master, 65536)
        except OSError:  # the other end closed: the process ended
            break
        if not data:
            break
        chunks.append(data)
    assert process.wait(timeout=60) == 0
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_a_bar_on_a_terminal(tmp_path: Path) -> None:
    shown = run_on_a_terminal(*RUN, runs_dir=tmp_path / "tty")
    assert "sgd mlp/synthetic s0" in shown  # which run
    assert "24/24" in shown and "step/s" in shown  # 3 epochs of 8 steps
    assert "epoch=3.00" in shown and "loss=" in shown and "train_s=" in shown
    assert "\r" in shown  # redrawn in place


def test_no_bar_in_a_redirected_log(tmp_path: Path) -> None:
    result = run_train(*RUN, runs_dir=tmp_path / "log")
    assert result.returncode == 0, result.stderr
    for text in (result.stdout, result.stderr):
        assert "step/s" not in text and "\r" not in text
    assert "epoch 3.00 step 24" in result.stdout  # the log lines are there


@pytest.mark.slow  # make test-slow; its siblings here stay in make test (15-minute budget)
def test_the_bar_can_be_asked_for_in_a_log(tmp_path: Path) -> None:
    result = run_train(*RUN, "trainer.progress_bar=true", runs_dir=tmp_path / "forced")
    assert result.returncode == 0, result.stderr
    assert "24/24" in result.stderr
