"""Run records -> a tidy `Sweep` (analysis.sweep). Reads files or W&B, never training code.

Sources (the `--runs` argument of every command):
    runs/demo                  a folder of run directories (any folder holding summary.json)
    wandb:entity/project       a W&B project, through wandb's public API (needs `wandb login`)
    wandb-offline:runs/demo    the offline W&B runs (<run_dir>/wandb/offline-run-*) under a
                               folder, read with wandb's own reader: what W&B will show once
                               they are synced
A run directory holds config.yaml, metrics.jsonl and summary.json (runners.records), and
environment.json, of which only the device is read (the default clock of the paper figures).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from analysis.sweep import SourceError, Sweep, build_sweep, run_row
from contract.records import (
    CONFIG_FILE,
    ENVIRONMENT_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    parse_metric_lines,
)

WANDB_PREFIX = "wandb:"
OFFLINE_PREFIX = "wandb-offline:"


def find_run_dirs(root: Path | str) -> list[Path]:
    return sorted(path.parent for path in Path(root).rglob(SUMMARY_FILE))


def read_run_dir(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any] | None, list[dict]]:
    """(summary, resolved config or None, metric records) of one run directory."""
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    config_path = run_dir / CONFIG_FILE
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else None
    metrics_path = run_dir / METRICS_FILE
    text = metrics_path.read_text() if metrics_path.is_file() else ""
    return summary, config, parse_metric_lines(text).records  # a torn last line is left out


def read_environment(run_dir: Path) -> dict[str, Any] | None:
    """environment.json of a run directory (device, threads, ...); None when there is none
    or it cannot be read (it only tells the device)."""
    try:
        environment = json.loads((run_dir / ENVIRONMENT_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return environment if isinstance(environment, dict) else None


def load_local(root: Path | str) -> Sweep:
    runs = []
    for run_dir in find_run_dirs(root):
        summary, config, records = read_run_dir(run_dir)
        row = run_row(summary, config, str(run_dir), read_environment(run_dir))
        runs.append((row, records))
    return build_sweep(str(root), runs)


def load(source: Path | str) -> Sweep:
    """The sweep at `source` (see the module docstring for the forms); SourceError when it
    cannot be read."""
    text = str(source)
    if text.startswith(WANDB_PREFIX):
        from analysis.wandb_source import load_wandb_project

        return load_wandb_project(text.removeprefix(WANDB_PREFIX))
    if text.startswith(OFFLINE_PREFIX):
        from analysis.wandb_source import load_wandb_offline

        return load_wandb_offline(Path(text.removeprefix(OFFLINE_PREFIX)))
    if not Path(text).is_dir():
        raise SourceError(
            f"no folder {text!r}: give a folder of run directories, "
            "wandb:<entity>/<project> or wandb-offline:<folder>"
        )
    return load_local(text)


def load_for_command(source: Path | str) -> Sweep | None:
    """The sweep at `source` for a command (compare, figures, report): None, after one line on
    stderr, when it cannot be read or holds no runs (the command then exits with status 1)."""
    try:
        sweep = load(source)
    except SourceError as error:
        print(error, file=sys.stderr)
        return None
    if sweep.runs.empty:
        print(f"no runs in {source}", file=sys.stderr)
        return None
    return sweep


def load_summaries(root: Path | str) -> pd.DataFrame:
    """One row per run under root (Sweep.runs)."""
    return load(root).runs


def load_metrics(root: Path | str) -> pd.DataFrame:
    """One row per (run, logged step) under root (Sweep.metrics)."""
    return load(root).metrics
