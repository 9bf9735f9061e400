"""Quantities the papers plot that the runner does not log under a name of their own,
computed from the logged records (contract.records) into `Sweep.metrics` columns, with each
run's best (smallest) value as a `best.<name>` column of `Sweep.runs`:

- `train/loss_ema_epoch_end`: `train/loss_ema` (the 0.9/0.1 EMA of the mini-batch losses,
  started at the first loss) at the epoch ends only, i.e. the records whose step is a whole
  number of epochs. The TNT code records, selects by and plots this array (it also records
  the first mini-batch loss at epoch 0; sobench logs no EMA before the first step, so the
  curve starts at epoch 1). Records between epoch ends (every `log_every_steps`) are left
  out, so their values never decide a selection.
- `train/full_loss_l2`: the full training-set loss plus 0.5 tau ||w||^2 with tau = 1e-5,
  from `train/full_loss` and `model/weight_sq_norm` of the same evaluation: the training loss
  the K-BFGS code plots. NaN where `model/weight_sq_norm` is missing (runs logged before it
  existed): such runs lack the quantity; nothing else stands in for it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from contract.records import EPOCH, FULL_TRAIN_LOSS, TRAIN_LOSS_EMA, WEIGHT_SQ_NORM

EMA_AT_EPOCH_ENDS = "train/loss_ema_epoch_end"
KBFGS_TAU = 1e-5  # the K-BFGS code's L2 coefficient (every method, weights and biases)
KBFGS_OBJECTIVE = "train/full_loss_l2"
DERIVED_LOSSES = (EMA_AT_EPOCH_ENDS, KBFGS_OBJECTIVE)


def _column(metrics: pd.DataFrame, name: str) -> pd.Series:
    if name in metrics:
        return metrics[name].astype(float)
    return pd.Series(np.nan, index=metrics.index, dtype=float)


def add_derived_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """`metrics` with the DERIVED_LOSSES columns (NaN where their inputs are missing)."""
    if metrics.empty:
        return metrics.assign(**{name: pd.Series(dtype=float) for name in DERIVED_LOSSES})
    epoch = _column(metrics, EPOCH)
    at_epoch_end = (epoch > 0) & (epoch == np.floor(epoch))
    ema = _column(metrics, TRAIN_LOSS_EMA).where(at_epoch_end)
    objective = _column(metrics, FULL_TRAIN_LOSS) + 0.5 * KBFGS_TAU * _column(
        metrics, WEIGHT_SQ_NORM
    )
    return metrics.assign(**{EMA_AT_EPOCH_ENDS: ema, KBFGS_OBJECTIVE: objective})


def add_best_of_derived(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """`runs` with `best.<name>` for each derived loss: the smallest value over the run's
    records (NaN when it has none), as summary.json's `best` holds for the logged losses."""
    columns = {}
    for name in DERIVED_LOSSES:
        if metrics.empty or name not in metrics:
            columns[f"best.{name}"] = np.nan
            continue
        best = metrics.groupby("run_id")[name].min()
        columns[f"best.{name}"] = runs["run_id"].map(best).astype(float)
    return runs.assign(**columns)
