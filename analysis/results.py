"""What every table and figure of a sweep starts from: the chosen setting of each
(problem, method), its runs (all seeds, any status), and the time-to-target of each run.

The setting is chosen by each problem's rule under `select` (analysis.papers): by default
"paper", the rule of the paper the problem comes from (the TNT code's epoch-end EMA, the
K-BFGS objective, test accuracy for classifiers; sobench's rules for the problems of no
paper, such as `demo`); "full" or "ema" choose autoencoders by that training loss instead.
`rules` overrides the rule of named problems.

When no setting of a (problem, method) finished (every one diverged or failed, or is still
running), its runs are all kept under the setting "none finished", so the tables still show
the method, its step cost and its misses instead of leaving it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from analysis.papers import LossChoice, selection_rules
from analysis.selection import Rule, Selection, select
from analysis.sweep import Sweep, matching
from analysis.targets import default_targets, run_time_to_target

NONE_FINISHED = "none finished"


@dataclass(frozen=True)
class Results:
    sweep: Sweep
    selection: Selection
    compared: pd.DataFrame  # runs of the compared settings, with a `setting` column
    targets: dict[str, float]
    per_run: pd.DataFrame  # index-free: run_id, target, epochs_to_target, time_to_target
    select_by: LossChoice = "paper"  # what the rules were chosen by (analysis.papers)

    @classmethod
    def of(
        cls,
        sweep: Sweep,
        targets: Mapping[str, float] | None = None,
        rules: Mapping[str, Rule] | None = None,
        select_by: LossChoice = "paper",
    ) -> Results:
        rules = {**selection_rules(sweep.runs, select_by), **(rules or {})}
        selection = select(sweep.runs, rules)
        compared = compared_runs(sweep.runs, selection)
        given = {  # a target given for an experiment holds for each of its problems
            problem: value
            for name, value in (targets or {}).items()
            for problem in matching(sweep.problems, [name])[0]
        }
        chosen_targets = {**default_targets(sweep.runs, selection), **given}
        per_run = run_time_to_target(sweep.metrics, compared, chosen_targets, selection.rules)
        return cls(sweep, selection, compared, chosen_targets, per_run, select_by)

    def metrics_of(self, problem: str, method: str) -> pd.DataFrame:
        """Metric rows of the compared runs of (problem, method)."""
        runs = self.compared
        ids = runs.loc[(runs["problem"] == problem) & (runs["method"] == method), "run_id"]
        metrics = self.sweep.metrics
        return metrics[metrics["run_id"].isin(ids)] if not metrics.empty else metrics


def compared_runs(runs: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """The chosen setting's runs per (problem, method), or all its runs when none finished."""
    if runs.empty:
        return runs.assign(setting=pd.Series(dtype=str))
    settings = selection.settings.set_index("group")["setting"]
    chosen = selection.chosen_runs(runs)
    chosen = chosen.assign(setting=chosen["group"].map(settings))
    has_choice = set(selection.best_groups())
    pairs = list(zip(runs["problem"], runs["method"], strict=True))
    unfinished = runs[[pair not in has_choice for pair in pairs]]
    return pd.concat([chosen, unfinished.assign(setting=NONE_FINISHED)], ignore_index=True)
