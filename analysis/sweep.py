"""The tidy form of a sweep, whatever it was read from (run directories or W&B).

A `Sweep` holds two frames:
- `runs`: one row per run: identity (run_id, group, experiment, optimizer, model, dataset,
  seed), `status` (contract.records.STATUSES), `problem`, `method`, `device` (where it
  trained: environment.json's device, else the config's `device` unless it is "auto"; None
  when unknown, e.g. W&B runs with device=auto), counts
  (epochs, steps, steps_per_epoch, diverged_at_step, parameters), `final.*` and `best.*`
  metrics, `time.*` totals, `machine_load.*` (the machine's cores and load average during the
  run, when the summary has them), the best values of the derived losses (analysis.quantities)
  as `best.<name>`, and the flattened resolved config as `config.<key>` columns;
- `metrics`: one row per (run, logged step): the logged metrics (records of one step, e.g. the
  step record and the evaluation record, merged into one row as W&B does), `test/error` and
  `train/error` (1 - accuracy) for classifiers, the derived losses the papers plot
  (analysis.quantities: the EMA at epoch ends, the K-BFGS objective), and the run's identity,
  status, problem, method and config columns.
Runs that did not complete are kept with their status, never dropped; a run that logged
nothing is still a row of `runs`. The trials of a tuning study (config `tuning.role: trial`,
runners.tune) are left out: they are ranked on the validation split, and their curves are
analysis.tuning's; the study's final reruns are ordinary runs here.

`problem` is the experiment, unless runs of one experiment trained different problems: other
models or data sets, or other data/model settings (e.g. `scale=smoke` trains on a subset of
the data set); then each is "<experiment>[<key>=<value>, ...]" with the keys that differ, so
a smoke run never competes with a full one. `method` is the optimizer, or a named variant of
it chosen by a config value (TNT with the empirical Fisher is "tnt_ef").
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.quantities import add_best_of_derived, add_derived_metrics
from analysis.style import METHOD_VARIANTS
from contract.records import MACHINE_LOAD, STATUSES, is_identity_key
from contract.tuning import TRIAL

__all__ = ["STATUSES", "SourceError", "Sweep", "build_sweep", "run_row"]

IDENTITY_COLUMNS = ("run_id", "group", "experiment", "optimizer", "model", "dataset", "seed")
RUN_COUNT_COLUMNS = ("epochs", "steps", "steps_per_epoch", "diverged_at_step", "parameters")
# The run columns joined to every metrics row (the rest stay in `runs`).
JOINED_COLUMNS = (*IDENTITY_COLUMNS, "status", "problem", "method")
TUNING_ROLE_COLUMN = "config.tuning.role"


class SourceError(Exception):
    """A source of runs that cannot be read (no such folder, no W&B login, no project)."""


@dataclass(frozen=True)
class Sweep:
    source: str
    runs: pd.DataFrame
    metrics: pd.DataFrame

    @property
    def problems(self) -> list[str]:
        return sorted(self.runs["problem"].dropna().unique()) if not self.runs.empty else []


def flatten(prefix: str, data: Any) -> dict[str, Any]:
    """Nested dicts -> {"a.b.c": value}; lists as JSON text (hashable, comparable cells)."""
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(flatten(f"{prefix}.{key}" if prefix else str(key), value))
        return flat
    if isinstance(data, list):
        return {prefix: json.dumps(data)}
    return {prefix: data}


def run_row(
    summary: dict[str, Any],
    config: dict[str, Any] | None,
    location: str,
    environment: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One `runs` row from a summary (summary.json's fields), the resolved config and, when
    there is one, environment.json."""
    row: dict[str, Any] = {key: summary.get(key) for key in IDENTITY_COLUMNS}
    row["status"] = summary.get("status")
    row["location"] = location
    row["device"] = _device(config, environment)
    for key in (*RUN_COUNT_COLUMNS, "error"):
        row[key] = summary.get(key)
    # machine_load (cpu_count, load_1min_mean, ...): how busy the machine was, which says
    # whether the run's times can be trusted (analysis.machine_load); older summaries lack it
    for section in ("final", "best", "time", MACHINE_LOAD):
        row.update(flatten(section, summary.get(section) or {}))
    row.update(flatten("config", config or {}))
    return row


def _device(config: dict[str, Any] | None, environment: dict[str, Any] | None) -> str | None:
    """The device the run trained on ("cpu", "cuda:0"): the runner writes the resolved one
    to environment.json; the config's says it only when it is not "auto"."""
    device = (environment or {}).get("device")
    if device:
        return str(device)
    configured = (config or {}).get("device")
    return str(configured) if configured and configured != "auto" else None


def _method(row: pd.Series) -> str:
    for (optimizer, column, value), name in METHOD_VARIANTS.items():
        if row["optimizer"] == optimizer and row.get(column) == value:
            return name
    return row["optimizer"]


# what defines the problem a run trains (anything else that differs is the optimizer's
# setting or the trainer's budget, which tuned_trainer may set per optimizer); keys that are
# not part of a run's identity (where the data came from) never split a problem
PROBLEM_PREFIXES = ("config.model.", "config.dataset.")


def _is_problem_key(column: str) -> bool:
    return column.startswith(PROBLEM_PREFIXES) and is_identity_key(column.removeprefix("config."))


def _problems(runs: pd.DataFrame) -> pd.Series:
    keys = ["model", "dataset"] + [column for column in runs if _is_problem_key(column)]
    problems = runs["experiment"].astype(object).copy()
    # a run that does not say what it trained (it failed before writing its config) stays
    # with its experiment
    described = runs["model"].notna() | runs["dataset"].notna()
    config_columns = [column for column in runs if column.startswith("config.")]
    if config_columns:
        described &= runs[config_columns].notna().any(axis=1)
    for experiment, members in runs[described].groupby("experiment"):
        texts = members[keys].map(config_text)
        differing = [key for key in keys if texts[key].nunique() > 1]
        if not differing:
            continue
        labels = texts[differing].apply(
            lambda row, keys=differing: ", ".join(
                f"{key.removeprefix('config.')}={row[key]}" for key in keys
            ),
            axis=1,
        )
        problems[members.index] = f"{experiment}[" + labels + "]"
    return problems


def config_text(value: Any) -> str:
    """A config value as YAML writes it (pandas turns null into NaN and 64 into 64.0)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def matching(problems: list[str], names: Iterable[str]) -> tuple[list[str], list[str]]:
    """(problems of the sweep that each name stands for, names with none): a name is a
    problem, or an experiment that stands for all its problems "<experiment>[...]"."""
    found, missing = [], []
    for name in names:
        matches = [p for p in problems if p == name or p.startswith(f"{name}[")]
        found += [p for p in matches if p not in found]
        if not matches:
            missing.append(name)
    return found, missing


def _merge_steps(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Records of one run -> one row per step (later records fill in what earlier ones lack,
    as W&B merges the calls logged at one step)."""
    frame = pd.DataFrame(records)
    if frame.empty or "step" not in frame:
        return frame
    return frame.groupby("step", sort=True).last().reset_index()


def build_sweep(source: str, runs: Iterable[tuple[dict[str, Any], list[dict[str, Any]]]]) -> Sweep:
    """Sweep from (run row, metric records) pairs; see the module docstring."""
    rows, record_lists = [], []
    for row, records in runs:
        if row.get(TUNING_ROLE_COLUMN) == TRIAL:
            continue  # a tuning trial: ranked on the validation split, never compared
        rows.append(row)
        record_lists.append(records)
    run_frame = pd.DataFrame(rows)
    if run_frame.empty:
        return Sweep(source, run_frame, pd.DataFrame())
    run_frame["problem"] = _problems(run_frame)
    run_frame["method"] = run_frame.apply(_method, axis=1)
    config_columns = [column for column in run_frame if column.startswith("config.")]
    joined = [*JOINED_COLUMNS, *config_columns]
    frames = []
    for (_, run), records in zip(run_frame.iterrows(), record_lists, strict=True):
        merged = _merge_steps(records)
        if merged.empty:
            continue
        run_columns = {key: run[key] for key in joined if key not in merged.columns}
        frames.append(merged.assign(**run_columns))
    # with no records at all (every run failed before training) the frame still has the
    # columns every consumer selects on
    empty = pd.DataFrame(columns=["step", "epoch", "time/train_s", *joined])
    metrics = pd.concat(frames, ignore_index=True) if frames else empty
    for split in ("train", "test"):
        if f"{split}/accuracy" in metrics:
            metrics[f"{split}/error"] = 1.0 - metrics[f"{split}/accuracy"]
    metrics = add_derived_metrics(metrics)
    return Sweep(source, add_best_of_derived(run_frame, metrics), metrics)
