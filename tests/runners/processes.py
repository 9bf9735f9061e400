"""Training runs as real subprocesses that a test can signal, kill or run side by side."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import QUICK, REPO, read_metrics, run_dirs, run_train

# The MNIST autoencoder on synthetic data: about a second of training, slow enough per epoch
# (32 steps) to be stopped inside an epoch.
EPOCHS, STEPS_PER_EPOCH = 4, 32
RESUMABLE = (
    *QUICK,
    "model=mnist_ae",
    "dataset.train_size=2048",
    f"trainer.max_epochs={EPOCHS}",
    "trainer.log_every_steps=5",
)
TIMING_KEYS = ("time/", "mem/")
DEADLINE_S = 120.0


def uninterrupted_metrics(runs_dir: Path) -> list[dict]:
    """The records of RESUMABLE run from start to end without a stop, into runs_dir."""
    result = run_train(*RESUMABLE, runs_dir=runs_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    (run_dir,) = run_dirs(runs_dir)
    return read_metrics(run_dir)


def comparable(metrics: list[dict]) -> list[dict]:
    """Records without timings and memory, which differ between any two runs."""
    return [
        {key: value for key, value in record.items() if not key.startswith(TIMING_KEYS)}
        for record in metrics
    ]


@dataclass
class TrainProcess:
    """`python -m runners.train paths.runs_dir=... overrides...` (or another entry point,
    e.g. runners.tune), its output kept in files."""

    process: subprocess.Popen
    out: Path

    @classmethod
    def start(
        cls, *overrides: str, runs_dir: Path, name: str = "train", module: str = "runners.train"
    ) -> TrainProcess:
        runs_dir.mkdir(parents=True, exist_ok=True)
        out = runs_dir.parent / f"{runs_dir.name}-{name}.out"
        command = [sys.executable, "-m", module, f"paths.runs_dir={runs_dir}"]
        with out.open("wb") as stream:
            process = subprocess.Popen(
                [*command, *overrides],
                cwd=REPO,
                stdout=stream,
                stderr=subprocess.STDOUT,
                env=os.environ.copy(),
            )
        return cls(process, out)

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not condition():
            assert self.process.poll() is None, f"the run ended before {what}: {self.output()}"
            assert time.monotonic() < deadline, f"no {what} within {DEADLINE_S} s"
            time.sleep(0.005)

    def signal(self, signum: int) -> int:
        """Send signum and wait for the process to end; returns its exit status."""
        self.process.send_signal(signum)
        return self.process.wait(timeout=DEADLINE_S)

    def wait(self) -> int:
        return self.process.wait(timeout=DEADLINE_S)

    def output(self) -> str:
        return self.out.read_text(errors="replace")


def metric_lines(runs_dir: Path) -> int:
    paths = list(runs_dir.rglob("metrics.jsonl"))
    return len(paths[0].read_text().splitlines()) if paths else 0


def has_checkpoint(runs_dir: Path) -> bool:
    return any(runs_dir.rglob("checkpoint.pt"))


def steps_of(metrics: list[dict]) -> list[int]:
    """The step of every record, in file order (a step may repeat: a step record and an
    evaluation record are both logged at an epoch's last step)."""
    return [record["step"] for record in metrics]


def assert_no_duplicate_or_gap(metrics: list[dict], reference: list[dict]) -> None:
    """The records are the uninterrupted run's, in its order: no record twice, none lost."""
    assert steps_of(metrics) == steps_of(reference)
    assert comparable(metrics) == comparable(reference)
