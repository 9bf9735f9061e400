"""Checkpoints: everything a killed run needs to continue exactly where it stopped.

Saved at epoch boundaries: the model, optimizer and LR-scheduler states, the trainer's
progress (steps, clocks, metric lines written, best values) and torch's random states (the
sampled Fisher draws from them). Mini-batch order needs no state: it is a function of
(seed, epoch) (data.tensors.ShuffledBatches). On CPU a resumed run therefore logs the same
numbers as an uninterrupted one.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from runners.records import write_atomically


def random_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomically(Path(path), buffer.getvalue())


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any] | None:
    path = Path(path)
    if not path.is_file():
        return None
    # The file is the harness's own, written into the run directory: full unpickling is safe
    # and needed for optimizer states that hold Python objects.
    return torch.load(path, map_location=device, weights_only=False)
