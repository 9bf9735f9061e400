"""The runner and the clock on a CUDA device (`make test-gpu`; needs a GPU)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from optimizers.phases import phase
from runners.clock import StepClock
from tests.conftest import read_metrics, run_dirs

pytestmark = pytest.mark.gpu


def test_run_on_gpu_matches_cpu(train_quick, tmp_path: Path) -> None:
    assert train_quick("device=cpu").returncode == 0
    result = train_quick("device=cuda")
    assert result.returncode == 0, result.stderr
    by_device = {}
    for run_dir in run_dirs(tmp_path / "runs"):
        environment = json.loads((run_dir / "environment.json").read_text())
        by_device[environment["device"].split(":")[0]] = run_dir
    assert set(by_device) == {"cpu", "cuda"}
    cpu, gpu = (read_metrics(by_device[name]) for name in ("cpu", "cuda"))
    for cpu_record, gpu_record in zip(cpu, gpu, strict=True):
        for key in ("train/loss", "train/full_loss", "test/loss"):
            if key in cpu_record:
                assert gpu_record[key] == pytest.approx(cpu_record[key], rel=1e-3)
    assert gpu[-1]["mem/peak_bytes"] > 0


def test_clock_counts_asynchronous_gpu_work() -> None:
    device = torch.device("cuda")
    clock = StepClock(device)
    matrix = torch.randn(2048, 2048, device=device)
    with clock.step(), phase("statistics"):
        launched = time.perf_counter()
        for _ in range(50):
            matrix = matrix @ matrix / 2048**0.5
        launch_seconds = time.perf_counter() - launched
    # the kernels run after their launch returns: a clock without synchronisation would see
    # only the launch time
    assert clock.train_s > launch_seconds
    assert clock.phase_s["statistics"] == pytest.approx(clock.train_s, rel=0.1)
