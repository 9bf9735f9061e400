"""Time to a target, AlgoPerf style: the training time (and epoch) of a run's first
evaluation at which the metric reached the target; inf when no evaluation did (the run
missed it, diverged or failed).

The metric and its direction come from the problem's selection rule (its training loss <=
target for autoencoders: the full loss, or the paper's epoch-end EMA or K-BFGS objective;
test accuracy >= target for classifiers). Times are the training clock (time/train_s). Per
(problem, method), the value is the median over the seeds of the chosen setting, with misses
as inf: a method that misses the target on half its seeds or more has an infinite time.

Default target of a problem (when none is given): the loosest value that every seed of the
baseline's chosen setting (SGD-m) reached, i.e. the largest of their best training losses
or the smallest of their best test accuracies, so the table reads "how fast does each method
get to where SGD-m gets within the budget". Without a finished SGD-m run: the median over
methods of their chosen settings' scores.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from analysis.selection import Rule, Selection, run_scores
from contract.records import BASELINE_OPTIMIZER as BASELINE


def reached(values: pd.Series, target: float, rule: Rule) -> pd.Series:
    return values >= target if rule.maximize else values <= target


def run_time_to_target(
    metrics: pd.DataFrame,
    runs: pd.DataFrame,
    targets: Mapping[str, float],
    rules: Mapping[str, Rule],
) -> pd.DataFrame:
    """Index run_id; columns target, epochs_to_target, time_to_target (inf when missed)."""
    rows = []
    for run in runs.itertuples():
        target, rule = targets.get(run.problem), rules.get(run.problem)
        row = {"run_id": run.run_id, "target": target, "epochs_to_target": np.inf}
        row["time_to_target"] = np.inf
        if target is not None and rule is not None and not metrics.empty:
            metric = rule.metric
            records = metrics[metrics["run_id"] == run.run_id]
            if metric in records:
                evaluations = records.dropna(subset=[metric]).sort_values("step")
                hits = evaluations[reached(evaluations[metric], target, rule)]
                if not hits.empty:
                    row["epochs_to_target"] = float(hits["epoch"].iloc[0])
                    row["time_to_target"] = float(hits["time/train_s"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows, columns=["run_id", "target", "epochs_to_target", "time_to_target"])


def default_targets(runs: pd.DataFrame, selection: Selection) -> dict[str, float]:
    """Per problem, the target described in the module docstring."""
    chosen = selection.chosen_runs(runs)
    targets = {}
    for problem, rule in selection.rules.items():
        baseline = chosen[(chosen["problem"] == problem) & (chosen["method"] == BASELINE)]
        scores = run_scores(baseline, rule)
        if len(baseline) and np.isfinite(scores).all():
            targets[problem] = float(scores.min() if rule.maximize else scores.max())
            continue
        settings = selection.settings
        of_problem = settings[(settings["problem"] == problem) & settings["chosen"]]
        if not of_problem.empty:
            targets[problem] = float(of_problem["score"].median())
    return targets


def method_time_to_target(per_run: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per (problem, method): the median over the given runs (misses as inf)."""
    joined = runs[["run_id", "problem", "method"]].merge(per_run, on="run_id")
    return joined.groupby(["problem", "method"])[
        ["target", "epochs_to_target", "time_to_target"]
    ].median()
