"""Read offline W&B run files back with wandb's own reader (`wandb leet inspect --json`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WANDB = Path(sys.executable).with_name("wandb")


def offline_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def wandb_records(offline_run: Path) -> list[dict]:
    """Every record of an offline run's .wandb transaction log, as wandb decodes them."""
    result = subprocess.run(
        [str(WANDB), "leet", "inspect", str(offline_run), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def history_rows(records: list[dict]) -> list[dict]:
    """History rows with their step: {"_step": n, key: value, ...}."""
    return [record["history"]["item"] for record in records if record["type"] == "history"]


def run_record(records: list[dict]) -> dict:
    return next(record["run"] for record in records if record["type"] == "run")
