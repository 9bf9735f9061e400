"""Runs whose machine was overloaded, and the warning that their times cannot be trusted.

The runner writes summary.json's `machine_load` section (contract.records.MACHINE_LOAD: the
core count and the 1-minute load average sampled during the run), which a `runs` row holds as
`machine_load.<key>` columns. A run is overloaded when the mean load was above the cores
(contract.records.overloaded): other processes then took turns on its cores, so its training
seconds, its time per step and every ratio of times to other runs measure the machine's
business as much as the optimizer. Its losses are not affected. Runs written before the
section existed lack the columns and are never flagged (nothing says they were overloaded).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from analysis.style import display_name, sort_key
from analysis.sweep import config_text
from contract.records import LOAD_KEYS, MACHINE_LOAD, overloaded

LOAD_COLUMNS = tuple(f"{MACHINE_LOAD}.{key}" for key in LOAD_KEYS)


def _load_of(row: pd.Series) -> dict[str, Any] | None:
    """The machine_load section of a run row; None when the summary had none (pandas fills
    the columns of such a run with NaN, which the contract's rule must not see as a value)."""
    load = {
        key: row.get(column)
        for key, column in zip(LOAD_KEYS, LOAD_COLUMNS, strict=True)
        if not _missing(row.get(column))
    }
    return load or None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def overloaded_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of `runs` whose machine was overloaded during the run."""
    if runs.empty or not any(column in runs for column in LOAD_COLUMNS):
        return runs.iloc[0:0]
    return runs[runs.apply(lambda row: overloaded(_load_of(row)), axis=1).astype(bool)]


def _run_text(row: pd.Series) -> str:
    """'SGD-m seed 0 (load 3.1 on 2 cores)': the run as (method, seed) and its mean load."""
    load = f"load {row[LOAD_COLUMNS[1]]:.3g} on {int(row[LOAD_COLUMNS[0]])} cores"
    return f"{display_name(row['method'])} seed {config_text(row['seed'])} ({load})"


def overload_warnings(runs: pd.DataFrame) -> dict[str, str]:
    """Per problem that has overloaded runs among `runs` (give the runs whose times are shown:
    Results.compared), one line naming them; problems without any are absent."""
    flagged = overloaded_runs(runs)
    warnings = {}
    for problem, members in flagged.groupby("problem", sort=True):
        members = members.assign(order=members["method"].map(sort_key)).sort_values(
            ["order", "seed"]
        )
        named = ", ".join(_run_text(row) for _, row in members.iterrows())
        warnings[problem] = (
            f"Warning: the machine was overloaded (mean load above its cores) during {named}: "
            "their times and time ratios are not trustworthy."
        )
    return warnings
