"""W&B runs -> the same tidy `Sweep` as run directories give (analysis.sweep).

What the harness's W&B sink writes (runners.wandb_sink): run id = the run id, group = the
setting (config without the seed), config = the resolved config plus `run` (the identity:
run_id, group, experiment, optimizer, model, dataset, seed), history = the metrics.jsonl
records at step=record["step"], and at the end summary `status`, `best` and `steps`. From
those this module rebuilds what summary.json holds: final = the last evaluation record,
time totals from the last records, epochs and steps per epoch from step / epoch. Not in W&B:
the parameter count; and for a run that diverged between evaluations, process time and
phase times are those of its last evaluation (summary.json has them at the diverging step).

Two readers give the same `WandbRun`s:
- `public_api_runs("entity/project")`: wandb's public API (`wandb.Api().runs`), for a live
  project (`wandb login` first);
- `offline_runs(folder)`: every offline run under a folder (<run_dir>/wandb/offline-run-*),
  decoded by wandb's own reader (`wandb leet inspect --json`; wandb 0.31 has no Python
  reader for .wandb files). A resumed run's several offline folders are merged.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.sweep import SourceError, Sweep, build_sweep, run_row
from contract.records import COMPLETED, FAILED, INTERRUPTED, MACHINE_LOAD, RUNNING

# W&B's run states -> the harness's statuses, for runs whose summary has no `status` (the
# sink writes it when the run ends, so these are runs that never ended properly). A crashed
# W&B run is a process that died without a word (the harness says `failed` itself when it
# fails): a kill, which the local records keep as `running`, resumable.
STATE_STATUS = {
    "finished": COMPLETED,
    "running": RUNNING,
    "pending": RUNNING,
    "crashed": RUNNING,
    "preempting": INTERRUPTED,
    "preempted": INTERRUPTED,
    "failed": FAILED,
    "killed": FAILED,
}
# W&B stores non-finite numbers as these strings
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
PHASE_KEY = re.compile(r"^time/phase/(.+)_s$")


@dataclass
class WandbRun:
    wandb_id: str
    group: str | None
    state: str
    config: dict[str, Any]
    summary: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    location: str = ""


# ----------------------------------------------------------------------------- readers
def public_api_runs(path: str, api: Any = None) -> list[WandbRun]:
    """Every run of the W&B project `path` ("entity/project") through wandb's public API."""
    import wandb

    try:
        if api is None:
            api = wandb.Api(timeout=60)
        return runs_from_public_api(api.runs(path, lazy=False, per_page=100), path)
    except (wandb.errors.Error, ValueError) as error:  # no login, no network, no project
        raise SourceError(f"W&B project {path!r}: {error}") from error


def runs_from_public_api(runs: Iterable[Any], path: str) -> list[WandbRun]:
    """wandb.apis.public.Run objects -> WandbRuns (full history through scan_history)."""
    return [
        WandbRun(
            wandb_id=run.id,
            group=run.group,
            state=run.state,
            config=dict(run.config),
            summary=dict(run.summary_metrics),
            history=list(run.scan_history(page_size=1000)),
            location=f"wandb:{path}/{run.id}",
        )
        for run in runs
    ]


def _wandb_executable() -> str:
    beside_python = Path(sys.executable).with_name("wandb")
    found = str(beside_python) if beside_python.is_file() else shutil.which("wandb")
    if found is None:
        raise SourceError("the `wandb` command (pip install wandb) reads offline runs")
    return found


def read_offline_run(folder: Path) -> list[dict[str, Any]]:
    """Every record of one offline run's .wandb transaction log, decoded by wandb."""
    result = subprocess.run(
        [_wandb_executable(), "leet", "inspect", str(folder), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def _merge_offline(records: list[dict[str, Any]], run: WandbRun | None) -> WandbRun:
    """Fold one offline folder's records into the run (a resumed run has several folders,
    each continuing the one before)."""
    state = "running"  # no exit record: the process never finished the run
    for record in records:
        kind = record["type"]
        if kind == "run":
            header = record["run"]
            if run is None:
                run = WandbRun(header["run_id"], header.get("run_group"), state, {}, {})
            run.config.update((header.get("config") or {}).get("update") or {})
        elif run is None:
            continue
        elif kind == "config":
            run.config.update(record["config"].get("update") or {})
        elif kind == "summary":
            run.summary.update(record["summary"].get("update") or {})
        elif kind == "history":
            run.history.append(record["history"]["item"])
        elif kind == "exit":
            state = "finished" if record["exit"].get("exit_code", 0) == 0 else "failed"
    if run is None:
        raise ValueError("an offline W&B run without its run record")
    run.state = state
    return run


def offline_runs(root: Path) -> list[WandbRun]:
    """Every offline W&B run under root; folders of one run id merged in time order."""
    folders = sorted(Path(root).rglob("offline-run-*"), key=lambda path: path.name)
    runs: dict[str, WandbRun] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        wandb_id = folder.name.rsplit("-", 1)[-1]
        run = _merge_offline(read_offline_run(folder), runs.get(wandb_id))
        run.location = str(folder.parent.parent)
        runs[wandb_id] = run
    return list(runs.values())


# ----------------------------------------------------------------------------- conversion
def _value(value: Any) -> Any:
    return NON_FINITE.get(value, value) if isinstance(value, str) else value


def history_records(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """W&B history rows -> metrics.jsonl-style records: `_step` -> `step`, W&B's own keys
    (`_runtime`, `_timestamp`, ...) dropped, non-finite strings back to floats."""
    records = []
    for row in history:
        record = {"step": row["_step"]}
        record.update({k: _value(v) for k, v in row.items() if not k.startswith("_")})
        records.append(record)
    # a resumed run logs its steps again from the checkpoint: the latest record wins
    by_step = {record["step"]: record for record in records}
    return [by_step[step] for step in sorted(by_step)]


def summary_from_wandb(run: WandbRun, records: list[dict[str, Any]]) -> dict[str, Any]:
    """What summary.json would hold, from the run's config, summary and history."""
    identity = dict(run.config.get("run") or {})
    identity.setdefault("run_id", run.wandb_id)
    identity.setdefault("group", run.group)
    status = run.summary.get("status") or STATE_STATUS.get(run.state.lower(), RUNNING)
    evaluations = [record for record in records if "train/full_loss" in record]
    final = evaluations[-1] if evaluations else {}
    last = records[-1] if records else {}
    steps = run.summary.get("steps", last.get("step"))
    per_epoch = [r["step"] / r["epoch"] for r in records if r.get("epoch")]
    steps_per_epoch = round(per_epoch[0]) if per_epoch else None
    train_s = last.get("time/train_s")
    phases = {
        match.group(1): value
        for key, value in final.items()
        if (match := PHASE_KEY.match(key)) and value
    }
    return {
        **identity,
        "status": status,
        "epochs": steps // steps_per_epoch if steps is not None and steps_per_epoch else None,
        "steps": steps,
        "steps_per_epoch": steps_per_epoch,
        "diverged_at_step": steps if status == "diverged" else None,
        "final": final,
        "best": run.summary.get("best") or {},
        "time": {
            "train_s": train_s,
            "process_s": final.get("time/process_s"),
            "eval_s": final.get("time/eval_s"),
            "warm_start_s": final.get("time/warm_start_s"),
            "per_step_s": train_s / steps if train_s is not None and steps else None,
            "phases_s": phases,
        },
        MACHINE_LOAD: run.summary.get(MACHINE_LOAD),  # the sink writes it when the run ends
    }


def _attempt(wandb_id: str, run_id: str) -> int:
    """`trainer.force=true` reruns log to <run_id>-<attempt>; the latest attempt is the run."""
    suffix = wandb_id.removeprefix(run_id).removeprefix("-")
    return int(suffix) if suffix.isdigit() else 0


def sweep_from_wandb(source: str, runs: list[WandbRun]) -> Sweep:
    latest: dict[str, tuple[int, dict[str, Any], dict[str, Any], list[dict], str]] = {}
    for run in runs:
        records = history_records(run.history)
        summary = summary_from_wandb(run, records)
        config = {k: v for k, v in run.config.items() if k not in ("run", "_wandb")}
        attempt = _attempt(run.wandb_id, summary["run_id"])
        previous = latest.get(summary["run_id"])
        if previous is None or attempt >= previous[0]:
            latest[summary["run_id"]] = (attempt, summary, config, records, run.location)
    pairs = [
        (run_row(summary, config, location), records)
        for _, summary, config, records, location in latest.values()
    ]
    return build_sweep(source, pairs)


def load_wandb_project(path: str) -> Sweep:
    return sweep_from_wandb(f"wandb:{path}", public_api_runs(path))


def load_wandb_offline(root: Path) -> Sweep:
    return sweep_from_wandb(f"wandb-offline:{root}", offline_runs(root))
