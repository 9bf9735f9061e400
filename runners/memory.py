"""Peak memory of a run: CUDA's max allocated bytes on GPU, the process's peak resident set
size (VmHWM) on CPU. Both are reset at the start of a run, so in a multirun that trains
several runs in one process each run reports its own peak (on Linux; elsewhere the CPU figure
is the process's lifetime peak)."""

from __future__ import annotations

import contextlib
import resource
import sys
from pathlib import Path

import torch

_PROC_STATUS = Path("/proc/self/status")
_PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):  # "5" resets the peak RSS (VmHWM), Linux >= 4.0
        _PROC_CLEAR_REFS.write_text("5")


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def tensor_bytes(value: object) -> int:
    """Bytes of all tensors in a nested structure of dicts, lists and tuples."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(item) for item in value)
    return 0


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Memory held in optimizer.state: momentum buffers, curvature factors, inverses. Methods
    keep all their state there (it is also what state_dict saves), so this is comparable
    across every optimizer, torch.optim's included."""
    return tensor_bytes(dict(optimizer.state))
