"""A Hydra callback that checks, before Hydra itself writes anything, that the runs
directory can be written: a read-only or full file system (or missing permissions) is then
one line and exit status 1, instead of a traceback from Hydra's own `mkdir` or config dump.

Configured in conf/config.yaml (hydra.callbacks.records_writable). The check writes, syncs
and removes a small probe file in paths.runs_dir. A disk that fills up later, during a run,
is caught where the records are written (runners.records.RecordsWriteError).
"""

from __future__ import annotations

import os
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

PROBE_BYTES = 64 * 1024  # a little more than Hydra's config dump and a first summary


def unwritable_reason(runs_dir: Path) -> str | None:
    """Why run records cannot be written under runs_dir, or None when they can."""
    probe = runs_dir / f".sobench-write-probe-{os.getpid()}"
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as stream:
            stream.write(b"\0" * PROBE_BYTES)
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as error:
        return error.strerror or str(error)
    finally:
        with suppress(OSError):
            probe.unlink(missing_ok=True)
    return None


class RecordsWritable(Callback):
    def _check(self, config: DictConfig) -> None:
        runs_dir = Path(str(config.paths.runs_dir))
        reason = unwritable_reason(runs_dir)
        if reason is not None:
            print(
                f"cannot write run records under {runs_dir}: {reason}. Make it writable, "
                "free space there, or choose another directory (paths.runs_dir=... or "
                "SOBENCH_RUNS_DIR).",
                file=sys.stderr,
            )
            sys.exit(1)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)
