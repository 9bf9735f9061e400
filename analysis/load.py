"""Run records -> pandas DataFrames. Reads run directories only (never imports training code).

A run directory is any folder holding a summary.json (runners.records). Two views:
- `load_summaries(root)`: one row per run: identity, status, final/best metrics, time totals,
  and the flattened resolved config as `config.<key>` columns;
- `load_metrics(root)`: one row per (run, logged record) of metrics.jsonl, with the run's
  identity, status and flattened config joined.
Runs that did not complete (running, failed, diverged) are kept with their status, never
dropped: a plot or table decides what to show.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

IDENTITY_COLUMNS = ("run_id", "group", "experiment", "optimizer", "model", "dataset", "seed")


def find_run_dirs(root: Path | str) -> list[Path]:
    root = Path(root)
    return sorted(path.parent for path in root.rglob("summary.json"))


def _flatten(prefix: str, data: Any) -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(f"{prefix}.{key}" if prefix else str(key), value))
        return flat
    if isinstance(data, list):
        return {prefix: json.dumps(data)}  # lists as JSON text: hashable, comparable columns
    return {prefix: data}


def _run_row(run_dir: Path) -> dict[str, Any]:
    summary = json.loads((run_dir / "summary.json").read_text())
    row = {key: summary.get(key) for key in IDENTITY_COLUMNS}
    row["status"] = summary.get("status")
    row["run_dir"] = str(run_dir)
    for section in ("final", "best"):
        row.update(_flatten(section, summary.get(section) or {}))
    row.update(_flatten("time", summary.get("time") or {}))
    for key in ("epochs", "steps", "steps_per_epoch", "diverged_at_step", "parameters", "error"):
        row[key] = summary.get(key)
    config_path = run_dir / "config.yaml"
    if config_path.is_file():
        row.update(_flatten("config", yaml.safe_load(config_path.read_text())))
    return row


def load_summaries(root: Path | str) -> pd.DataFrame:
    """One row per run directory under root."""
    return pd.DataFrame([_run_row(run_dir) for run_dir in find_run_dirs(root)])


def load_metrics(root: Path | str) -> pd.DataFrame:
    """One row per logged record of every run under root, with run columns joined."""
    frames = []
    for run_dir in find_run_dirs(root):
        run = _run_row(run_dir)
        path = run_dir / "metrics.jsonl"
        lines = path.read_text().splitlines() if path.is_file() else []
        records = pd.DataFrame([json.loads(line) for line in lines if line])
        if records.empty:
            continue
        run_columns = {key: value for key, value in run.items() if key not in records.columns}
        frames.append(records.assign(**run_columns))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
