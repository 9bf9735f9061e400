"""The files of one run directory (Hydra's output dir, runs/<experiment>/<run_id>/):

    config.yaml       the resolved config
    metrics.jsonl     one JSON object per log call (non-finite numbers as NaN / Infinity)
    summary.json      status (contract.records.STATUSES), final and best metrics, time
                      totals
    environment.json  torch, CUDA, device, CPU threads, git commit
    checkpoint.pt     what a resumed run restores (runners.checkpoint)

These records are the single source for the analysis package; W&B is a mirror.
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


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file and a rename, so a kill never leaves half a file."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class RunRecords:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.run_dir / CONFIG_FILE
        self.metrics_path = self.run_dir / METRICS_FILE
        self.summary_path = self.run_dir / SUMMARY_FILE
        self.environment_path = self.run_dir / ENVIRONMENT_FILE
        self.checkpoint_path = self.run_dir / "checkpoint.pt"

    def read_summary(self) -> dict[str, Any] | None:
        if not self.summary_path.is_file():
            return None
        return json.loads(self.summary_path.read_text())

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_atomically(self.summary_path, json.dumps(summary, indent=2).encode())

    def write_config(self, cfg: DictConfig) -> None:
        resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        write_atomically(self.config_path, OmegaConf.to_yaml(resolved).encode())

    def write_environment(self, environment: dict[str, Any]) -> None:
        write_atomically(self.environment_path, json.dumps(environment, indent=2).encode())

    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics_path.open("a") as stream:
            stream.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        return parse_metric_lines(self.metrics_path.read_text()).records

    def truncate_metrics(self, lines: int) -> None:
        """Keep the first `lines` records: those logged before the checkpoint being resumed."""
        kept = self.read_metrics()[:lines]
        text = "".join(json.dumps(record) + "\n" for record in kept)
        write_atomically(self.metrics_path, text.encode())

    def discard_progress(self) -> None:
        """Forget a previous attempt (trainer.force=true): metrics, checkpoint and summary."""
        for path in (self.metrics_path, self.checkpoint_path, self.summary_path):
            path.unlink(missing_ok=True)
