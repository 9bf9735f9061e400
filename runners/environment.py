"""What a run ran on, for environment.json: results are only comparable on like machines."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from runners.machine_load import load_1min

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_DENORMALS_FLUSHED = False


def flush_denormals() -> None:
    """Flush subnormal floats (|x| < 1.2e-38 in float32) to zero on the CPU, for the whole
    process: call it at start-up, before torch's first parallel operation, so that the
    OpenMP worker threads (created then) inherit the setting.

    Why: CPUs compute with subnormal numbers tens of times slower, and curvature methods make
    them (round-off in a root or inverse of a factor with zero rows, i.e. dead units, then in
    the products with it): one layer's Shampoo preconditioning on the MNIST autoencoder ran
    5x slower. Every method runs in the same mode, so comparisons stay fair; values that
    small carry no information in training.
    """
    global _DENORMALS_FLUSHED
    _DENORMALS_FLUSHED = bool(torch.set_flush_denormal(True))


def collect_environment(device: torch.device) -> dict[str, Any]:
    cuda = device.type == "cuda"
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else _cpu_model(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": torch.multiprocessing.cpu_count(),
        # how busy the machine was when the run started (runners.machine_load: the summary
        # has the load over the whole run)
        "load_1min_at_start": load_1min(),
        "cpu_denormals_flushed": _DENORMALS_FLUSHED,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
    }
