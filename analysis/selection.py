"""Best setting per (problem, method) from a sweep, by a rule per problem.

A setting is a W&B group: the config without the seed. The grid of a (problem, method) is
the config keys whose values differ between its settings, leaving out where things go
(paths, logger, hydra) and how often checkpoints are written. A rule is a column of
`Sweep.runs` and a direction; `select` takes each problem's rule from `rules`, else by the
kind of problem (sobench's rules):
- autoencoders (no test accuracy logged): lowest training loss, i.e. the smallest full
  training-set loss over the run's evaluations (`best.train/full_loss`);
- classifiers: highest test accuracy over the evaluations (`best.test/accuracy`).
The papers' own rules (the TNT code's epoch-end EMA, the K-BFGS objective) are given per
problem by analysis.papers.selection_rules, which analysis.results applies by default.
The score of a setting is the median over its seeds. A seed that diverged or failed counts as
the worst possible value (+inf loss, -inf accuracy), so a setting that diverges on a seed
loses to one that never does; runs still running are left out (their best is not final).
Only settings with a finite score can be chosen; ties go to the first group id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.quantities import EMA_AT_EPOCH_ENDS, KBFGS_OBJECTIVE, KBFGS_TAU
from analysis.style import display_name, ordered
from analysis.sweep import config_text
from contract.records import ENDED_BADLY, STATUSES, UNFINISHED, is_identity_key


@dataclass(frozen=True)
class Rule:
    column: str  # a column of Sweep.runs: "best.<metric>", <metric> a column of Sweep.metrics
    maximize: bool
    text: str  # what it chooses by
    why: str = field(default="", compare=False)  # whose rule it is (the report says it)

    def worst(self) -> float:
        return -np.inf if self.maximize else np.inf

    @property
    def metric(self) -> str:
        """The metric whose best value the rule compares (and time to target reads)."""
        return self.column.removeprefix("best.")


LOWEST_TRAINING_LOSS = Rule(
    "best.train/full_loss", False, "lowest training loss (full training set, best evaluation)"
)
HIGHEST_TEST_ACCURACY = Rule("best.test/accuracy", True, "highest test accuracy (best evaluation)")
LOWEST_EMA = Rule(
    f"best.{EMA_AT_EPOCH_ENDS}",
    False,
    "lowest minimum of the epoch-end EMA (0.9/0.1) of the mini-batch training losses",
)
LOWEST_KBFGS_OBJECTIVE = Rule(
    f"best.{KBFGS_OBJECTIVE}",
    False,
    f"lowest full training loss + 0.5 tau ||w||^2 (tau = {KBFGS_TAU:g}), best evaluation",
)
# the rule that selects autoencoders by each training loss a figure can draw
LOWEST_OF = {
    LOWEST_TRAINING_LOSS.metric: LOWEST_TRAINING_LOSS,
    LOWEST_EMA.metric: LOWEST_EMA,
    LOWEST_KBFGS_OBJECTIVE.metric: LOWEST_KBFGS_OBJECTIVE,
}


def is_classifier(runs: pd.DataFrame) -> bool:
    return "best.test/accuracy" in runs and bool(runs["best.test/accuracy"].notna().any())


def rule_for(runs: pd.DataFrame) -> Rule:
    """The papers' rule for the problem these runs train."""
    return HIGHEST_TEST_ACCURACY if is_classifier(runs) else LOWEST_TRAINING_LOSS


def grid_columns(runs: pd.DataFrame) -> list[str]:
    """Config columns of the run identity whose values differ between these runs (the seed
    aside: the seeds of a setting are its repetitions)."""
    candidates = [
        column
        for column in runs
        if column.startswith("config.")
        and column != "config.seed"
        and is_identity_key(column.removeprefix("config."))
    ]
    return [column for column in candidates if runs[column].nunique(dropna=False) > 1]


def short(column: str) -> str:
    return column.removeprefix("config.")


def run_scores(runs: pd.DataFrame, rule: Rule) -> pd.Series:
    """Each run's value under the rule: its metric when completed, the worst value when it
    diverged or failed (or completed without the metric), NaN while it is unfinished (running
    or interrupted: its best is not final)."""
    values = runs[rule.column] if rule.column in runs else pd.Series(np.nan, index=runs.index)
    values = values.astype(float)
    ended_badly = runs["status"].isin(ENDED_BADLY)
    completed_without = (runs["status"] == "completed") & values.isna()
    values = values.mask(ended_badly | completed_without, rule.worst())
    return values.mask(runs["status"].isin(UNFINISHED))


@dataclass(frozen=True)
class Selection:
    """`settings`: one row per (problem, method, group) with the setting's grid values as
    text, seed counts per status, the score and whether it was chosen."""

    settings: pd.DataFrame
    rules: dict[str, Rule]
    grids: dict[tuple[str, str], dict[str, list]]

    def best_groups(self) -> dict[tuple[str, str], str]:
        chosen = self.settings[self.settings["chosen"]]
        return {(row.problem, row.method): row.group for row in chosen.itertuples()}

    def chosen_runs(self, runs: pd.DataFrame) -> pd.DataFrame:
        """The runs (all seeds, any status) of each (problem, method)'s chosen setting."""
        keys = pd.MultiIndex.from_frame(runs[["problem", "method", "group"]])
        chosen = {
            (problem, method, group) for (problem, method), group in self.best_groups().items()
        }
        return runs[keys.isin(list(chosen))]


LEARNING_RATE = "config.optimizer.lr"


def _setting_text(row: pd.Series, grid: list[str]) -> str:
    """The grid values of a setting, and always its learning rate (the papers' first
    hyperparameter), so a method with a single setting still says what it ran with."""
    shown = ([LEARNING_RATE] if LEARNING_RATE in row.index else []) + [
        column for column in grid if column != LEARNING_RATE
    ]
    return (
        ", ".join(f"{short(column)}={config_text(row[column])}" for column in shown)
        or "(single setting)"
    )


def _settings_of(runs: pd.DataFrame, rule: Rule) -> tuple[pd.DataFrame, dict[str, list]]:
    grid = grid_columns(runs)
    scored = runs.assign(score=run_scores(runs, rule))
    rows = []
    for group, members in scored.groupby("group", sort=True):
        counts = members["status"].value_counts()
        row = {
            "problem": members["problem"].iloc[0],
            "method": members["method"].iloc[0],
            "group": group,
            "setting": _setting_text(members.iloc[0], grid),
            "seeds": len(members),
            **{status: int(counts.get(status, 0)) for status in STATUSES},
            "score": members["score"].median(),
        }
        rows.append(row)
    settings = pd.DataFrame(rows)
    finite = settings["score"].map(np.isfinite)
    settings["chosen"] = False
    if finite.any():
        candidates = settings[finite]
        best = candidates["score"].idxmax() if rule.maximize else candidates["score"].idxmin()
        settings.loc[best, "chosen"] = True
    values = {short(column): _sorted(runs[column].dropna().unique().tolist()) for column in grid}
    return settings, values


def _sorted(values: list) -> list:
    try:
        return sorted(values)
    except TypeError:  # mixed types (a number and a string): any fixed order will do
        return sorted(values, key=str)


def select(runs: pd.DataFrame, rules: Mapping[str, Rule] | None = None) -> Selection:
    """Score every setting of every (problem, method) and choose the best; `rules` overrides
    the rule of named problems."""
    frames, chosen_rules, grids = [], {}, {}
    for problem, of_problem in runs.groupby("problem", sort=True):
        rule = (rules or {}).get(problem) or rule_for(of_problem)
        chosen_rules[problem] = rule
        for method in ordered(of_problem["method"]):
            settings, grid = _settings_of(of_problem[of_problem["method"] == method], rule)
            frames.append(settings)
            grids[(problem, method)] = grid
    settings = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return Selection(settings, chosen_rules, grids)


def selection_markdown(selection: Selection) -> str:
    """Per problem: the rule, each method's grid, and every setting with its score."""
    lines = []
    for problem, rule in selection.rules.items():
        why = f" Why this rule: {rule.why}." if rule.why else ""
        lines += [
            f"### {problem}",
            "",
            f"Rule: **{rule.text}**, median over seeds; "
            f"a diverged or failed seed counts as the worst value.{why}",
            "",
        ]
        for (grid_problem, method), grid in selection.grids.items():
            if grid_problem != problem:
                continue
            text = "; ".join(
                f"`{key}` ∈ {{{', '.join(map(config_text, values))}}}"
                for key, values in grid.items()
            )
            lines.append(f"- {display_name(method)}: {text or 'one setting (no grid)'}")
        table = selection.settings[selection.settings["problem"] == problem]
        table = table.assign(
            method=table["method"].map(display_name),
            chosen=table["chosen"].map({True: "**best**", False: ""}),
        ).drop(columns=["problem", "group"])
        table["W&B group"] = selection.settings.loc[table.index, "group"]
        lines += ["", table.to_markdown(index=False, floatfmt=".5g"), ""]
    return "\n".join(lines)
