"""Checkpoints: everything a stopped run needs to continue exactly where it stopped.

Saved at epoch boundaries (every trainer.checkpoint_every_epochs), after the warm start, and
at the step where a SIGTERM / SIGINT stopped the run: the model, optimizer and LR-scheduler
states, the trainer's progress (steps, clocks, metric lines written, best values) and
torch's random states (the sampled Fisher draws from them; in a data-parallel run every
rank's, as `random_ranks`). Mini-batch order needs no state:
it is a function of (seed, epoch) (data.tensors.ShuffledBatches), so a run resumes in the
middle of an epoch too. On CPU a resumed run therefore logs the same numbers as an
uninterrupted one.

Two generations are kept: checkpoint.pt, the newest, and checkpoint.prev.pt, the one before.
A new checkpoint is written to a temporary file and synced first; only then does the newest
become the previous one and the new one the newest, so a kill or a full disk at any moment
leaves at least one complete checkpoint. A checkpoint that cannot be read (truncated,
damaged) is reported and the previous one is used; when none can be read the run restarts
from step 0 (runners.run says so in one line).
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from runners.records import RecordsWriteError, write_atomically

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("model", "optimizer", "progress", "clock", "random")


def random_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def previous_path(path: Path) -> Path:
    """checkpoint.pt -> checkpoint.prev.pt"""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` as the newest checkpoint, keeping the one it replaces as the previous."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    staged = path.with_name(path.name + ".new")
    write_atomically(staged, buffer.getvalue())  # complete and synced before anything moves
    try:
        if path.is_file():
            os.replace(path, previous_path(path))
        os.replace(staged, path)
    except OSError as error:
        raise RecordsWriteError(path, error) from error


@dataclass
class LoadedCheckpoint:
    state: dict[str, Any] | None  # None: no readable checkpoint
    path: Path | None
    unreadable: list[str]  # "<file>: <reason>" of each checkpoint that could not be read
    # the file's bytes: what rank 0 of a data-parallel run sends the other ranks, which load
    # them as they would load the file (runners.run)
    raw: bytes | None = None


def load_checkpoint_bytes(raw: bytes, device: torch.device) -> dict[str, Any]:
    """A checkpoint read from its bytes onto `device` (as load_checkpoint reads its file)."""
    # The bytes are the harness's own checkpoint (see load_checkpoint): full unpickling.
    return torch.load(io.BytesIO(raw), map_location=device, weights_only=False)


def load_checkpoint(path: Path, device: torch.device) -> LoadedCheckpoint:
    """The newest readable checkpoint: checkpoint.pt, else checkpoint.prev.pt."""
    path = Path(path)
    unreadable = []
    for candidate in (path, previous_path(path)):
        if not candidate.is_file():
            continue
        try:
            # The file is the harness's own, written into the run directory: full unpickling
            # is safe and needed for optimizer states that hold Python objects.
            raw = candidate.read_bytes()
            state = load_checkpoint_bytes(raw, device)
        except Exception as error:  # a damaged file fails in zipfile, pickle, torch, ...
            unreadable.append(f"{candidate.name}: {type(error).__name__}: {error}".strip())
            continue
        missing = [key for key in REQUIRED_KEYS if not isinstance(state, dict) or key not in state]
        if missing:
            unreadable.append(f"{candidate.name}: not a sobench checkpoint (no {missing[0]})")
            continue
        return LoadedCheckpoint(state, candidate, unreadable, raw)
    return LoadedCheckpoint(None, None, unreadable)
