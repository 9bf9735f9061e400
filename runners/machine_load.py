"""How busy the machine was while a run trained: on a shared machine, other processes take
turns on the cores and every timing of the run (and every ratio to another run) is off.

The 1-minute load average (os.getloadavg: processes running or waiting for a core) is
sampled at the start and at every evaluation (the samples are part of a checkpoint's
progress); summary.json gets their mean and maximum beside the core count
(contract.records.MACHINE_LOAD), and the analysis warns when the mean is above the cores
(contract.records.overloaded). The run's own threads count in the load.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any


def load_1min() -> float | None:
    try:
        return round(os.getloadavg()[0], 3)
    except OSError:  # not available on this platform
        return None


def load_summary(samples: Sequence[float]) -> dict[str, Any]:
    """summary.json's machine_load section (contract.records.LOAD_KEYS)."""
    return {
        "cpu_count": os.cpu_count(),
        "load_1min_mean": round(sum(samples) / len(samples), 3) if samples else None,
        "load_1min_max": max(samples) if samples else None,
        "samples": len(samples),
    }
