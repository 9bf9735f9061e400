"""The files of one run directory (Hydra's output dir, runs/<experiment>/<run_id>/); their
names and fields are contract.records':

    config.yaml       the resolved config
    metrics.jsonl     one JSON object per log call (non-finite numbers as NaN / Infinity)
    summary.json      status (contract.records.STATUSES), final and best metrics, time
                      totals, machine load
    environment.json  torch, CUDA, device, CPU threads, load at the start, git commit
    checkpoint.pt     what a resumed run restores (runners.checkpoint), and the one before it
    error.txt         the traceback of a run that failed on an error of the harness itself

These records are the single source for the analysis package; W&B is a mirror.

Every write that can fail because of the file system (read-only, full, permissions) raises
RecordsWriteError, which names the file, so that the runner can say it in one line instead
of a traceback; the write before it is never damaged (atomic replace).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from contract.records import (
    CONFIG_FILE,
    ENVIRONMENT_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    parse_metric_lines,
)

ERROR_FILE = "error.txt"


class RecordsWriteError(OSError):
    """A run record could not be written: the file system refused (read-only, full, ...)."""

    def __init__(self, path: Path, error: OSError) -> None:
        reason = error.strerror or str(error)
        super().__init__(error.errno, reason)
        self.path, self.reason = path, reason

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file and a rename, so a kill or a full disk never leaves half a
    file in place of the previous one."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        with temporary.open("wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise RecordsWriteError(path, error) from error


class RunRecords:
    def __init__(self, run_dir: Path) -> None:
        self._name_files(run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RecordsWriteError(self.run_dir, error) from error

    def _name_files(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.config_path = self.run_dir / CONFIG_FILE
        self.metrics_path = self.run_dir / METRICS_FILE
        self.summary_path = self.run_dir / SUMMARY_FILE
        self.environment_path = self.run_dir / ENVIRONMENT_FILE
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        self.error_path = self.run_dir / ERROR_FILE

    def read_summary(self) -> dict[str, Any] | None:
        """The summary, or None when there is none or it cannot be read (then the run is
        treated as never finished: resumed from its checkpoint or restarted)."""
        try:
            summary = json.loads(self.summary_path.read_text())
        except (OSError, ValueError):
            return None
        return summary if isinstance(summary, dict) else None

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_atomically(self.summary_path, json.dumps(summary, indent=2).encode())

    def write_config(self, cfg: DictConfig) -> None:
        resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        write_atomically(self.config_path, OmegaConf.to_yaml(resolved).encode())

    def write_environment(self, environment: dict[str, Any]) -> None:
        write_atomically(self.environment_path, json.dumps(environment, indent=2).encode())

    def write_error(self, text: str) -> None:
        write_atomically(self.error_path, text.encode())

    def append_metrics(self, record: dict[str, Any]) -> None:
        try:
            with self.metrics_path.open("a") as stream:
                stream.write(json.dumps(record) + "\n")
        except OSError as error:
            raise RecordsWriteError(self.metrics_path, error) from error

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every readable record; a line torn by a kill mid-write is left out."""
        if not self.metrics_path.is_file():
            return []
        return parse_metric_lines(self.metrics_path.read_text()).records

    def truncate_metrics(self, lines: int) -> None:
        """Keep the first `lines` records: those logged before the checkpoint being resumed
        (a torn last line is never one of them: it was written after that checkpoint)."""
        kept = self.read_metrics()[:lines]
        text = "".join(json.dumps(record) + "\n" for record in kept)
        write_atomically(self.metrics_path, text.encode())

    def discard_metrics(self) -> int:
        """Forget the metric records of an attempt that left no checkpoint; returns how many
        there were."""
        count = len(self.read_metrics())
        try:
            self.metrics_path.unlink(missing_ok=True)
        except OSError as error:
            raise RecordsWriteError(self.metrics_path, error) from error
        return count

    def discard_progress(self) -> None:
        """Forget a previous attempt (trainer.force=true): metrics, checkpoints and summary."""
        for path in (self.metrics_path, self.summary_path, self.error_path):
            path.unlink(missing_ok=True)
        for path in self.run_dir.glob("checkpoint*.pt"):
            path.unlink()


class RankRecords(RunRecords):
    """The records as a rank other than 0 of a data-parallel run sees them: rank 0 reads and
    writes the run directory (runners.distributed), so here every write does nothing and
    every read finds nothing; the directory need not even exist on this rank's node."""

    def __init__(self, run_dir: Path) -> None:
        self._name_files(run_dir)

    def read_summary(self) -> dict[str, Any] | None:
        return None

    def write_summary(self, summary: dict[str, Any]) -> None:
        pass

    def write_config(self, cfg: DictConfig) -> None:
        pass

    def write_environment(self, environment: dict[str, Any]) -> None:
        pass

    def write_error(self, text: str) -> None:
        pass

    def append_metrics(self, record: dict[str, Any]) -> None:
        pass

    def read_metrics(self) -> list[dict[str, Any]]:
        return []

    def truncate_metrics(self, lines: int) -> None:
        pass

    def discard_metrics(self) -> int:
        return 0

    def discard_progress(self) -> None:
        pass
