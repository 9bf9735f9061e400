"""Curves of several runs (the seeds of a setting) -> median and band, on epochs or time.

A run's curve is its records that hold the metric, indexed by the x axis: `epoch`;
`time` = `time/train_s` (sobench's training clock: synchronised wall-clock seconds of the
training steps; evaluation and warm start excluded); or `process` = `time/process_s` (the
process's CPU seconds over the same regions, the papers' clock; logged at evaluations only,
and blind to asynchronous GPU work). Runs are aligned on
the union of their x values, each interpolated linearly between its own records and never
extrapolated; the aggregate keeps only the x where every run has a value (up to the end of
the shortest run), so every point is a statistic over the same seeds.

Bands (per x, over the seeds):
- "minmax": the smallest and the largest value;
- "bootstrap": the percentile bootstrap confidence interval (95% by default) of the median:
  seeds resampled with replacement (scipy.stats.bootstrap, fixed random generator). With a
  single seed both bands collapse onto the curve.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from contract.records import EPOCH, PROCESS_S, TRAIN_S

Axis = Literal["epoch", "time", "process"]
Band = Literal["minmax", "bootstrap"]
AXIS_COLUMNS: dict[str, str] = {"epoch": EPOCH, "time": TRAIN_S, "process": PROCESS_S}
BANDS = ("minmax", "bootstrap")


def aligned(metrics: pd.DataFrame, metric: str, axis: Axis = "epoch") -> pd.DataFrame:
    """Index: the union of the runs' x values; one column per run_id, interpolated inside
    each run's own range and NaN outside it."""
    x = AXIS_COLUMNS[axis]
    if metric not in metrics or metrics.empty:
        return pd.DataFrame()
    records = metrics.dropna(subset=[metric, x])
    curves = {run_id: run.groupby(x)[metric].last() for run_id, run in records.groupby("run_id")}
    if not curves:
        return pd.DataFrame()
    table = pd.DataFrame(curves).sort_index()
    table.index.name = x
    return table.interpolate(method="index", limit_area="inside")


def seed_band(
    metrics: pd.DataFrame,
    metric: str,
    axis: Axis = "epoch",
    band: Band = "minmax",
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Columns x, median, low, high, seeds: the median over runs and the band, at each x
    where every run has a value (see the module docstring)."""
    if band not in BANDS:
        raise ValueError(f"unknown band {band!r}: choose one of {', '.join(BANDS)}")
    table = aligned(metrics, metric, axis).dropna()
    if table.empty:
        return pd.DataFrame(columns=["x", "median", "low", "high", "seeds"])
    values = table.to_numpy(dtype=float)  # (x, runs)
    median = np.median(values, axis=1)
    if band == "minmax" or values.shape[1] < 2:
        low, high = values.min(axis=1), values.max(axis=1)
        if band == "bootstrap":
            low, high = median, median
    else:
        low, high = bootstrap_median_interval(values, confidence, resamples, seed)
    return pd.DataFrame(
        {
            "x": table.index.to_numpy(dtype=float),
            "median": median,
            "low": low,
            "high": high,
            "seeds": values.shape[1],
        }
    )


def bootstrap_median_interval(
    values: np.ndarray, confidence: float, resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the median of each row of `values` (x, runs)."""
    with warnings.catch_warnings():
        # rows where every seed agrees (e.g. the initial evaluation) are "degenerate" to
        # scipy; their interval is that value, which the percentile method returns
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (values,),
            np.median,
            axis=1,
            vectorized=True,
            method="percentile",
            confidence_level=confidence,
            n_resamples=resamples,
            rng=np.random.default_rng(seed),
        )
    return result.confidence_interval.low, result.confidence_interval.high
