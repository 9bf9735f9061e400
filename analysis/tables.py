"""The tables of a sweep, one row per (problem, method) at its chosen setting (medians over
seeds), as DataFrames and as markdown + CSV files.

    python -m analysis.tables --runs runs/ [--out tables/] [--target tnt_mnist_ae=53]

- cost: ms per step and s per epoch (training clock), each relative to SGD-m on the same
  problem, and the optimizer state and peak memory at the last evaluation. Every run of the
  setting that took steps counts (a step's cost does not depend on how the run ended).
  Ratios compare runs of one sweep on one machine only.
- results: seeds per status, final and best training loss and best test accuracy (completed
  seeds), the target and the epochs and training seconds to reach it (analysis.targets; inf
  when missed; a seed that diverged before reaching it is a miss).
- profile_time / profile_epochs: Dolan-Moré performance profiles over problems
  (analysis.profiles) of the time and of the epochs to the target, at τ = 1 ... 4.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.budgets import budgets
from analysis.papers import LOSS_CHOICES
from analysis.profiles import TABLE_TAUS, performance_profile
from analysis.results import Results
from analysis.style import display_name, sort_key
from analysis.sweep import SourceError
from analysis.targets import method_time_to_target
from contract.records import BASELINE_OPTIMIZER as BASELINE
from contract.records import STATUSES

MIB = 2.0**20


def _ordered_index(table: pd.DataFrame) -> pd.DataFrame:
    """(problem, method) rows in problem order then the papers' method order, with display
    names for the methods."""
    keys = sorted(table.index, key=lambda key: (key[0], sort_key(key[1])))
    table = table.loc[keys]
    table.index = pd.MultiIndex.from_tuples(
        [(problem, display_name(method)) for problem, method in table.index],
        names=["problem", "method"],
    )
    return table


def cost_table(results: Results) -> pd.DataFrame:
    """Per (problem, method) at its chosen setting: medians over every seed that took steps
    (a step's cost does not depend on how the run ended), and their ratios to SGD-m."""
    runs = results.compared
    stepped = runs[runs["steps"].fillna(0) > 0]
    if stepped.empty:
        return pd.DataFrame()
    stepped = stepped.assign(epoch_s=stepped["time.per_step_s"] * stepped["steps_per_epoch"])
    columns = {"ms / step": "time.per_step_s", "s / epoch": "epoch_s"}
    memory = {
        "optimizer state (MiB)": "final.mem/optimizer_state_bytes",
        "peak memory (MiB)": "final.mem/peak_bytes",
    }
    grouped = stepped.groupby(["problem", "method"])
    table = pd.DataFrame({name: grouped[column].median() for name, column in columns.items()})
    table["ms / step"] *= 1000.0
    for name, column in memory.items():
        if column in stepped:
            table[name] = grouped[column].median() / MIB
    for unit, ratio in (("ms / step", "step time / SGD-m"), ("s / epoch", "epoch time / SGD-m")):
        baseline = {
            problem: table.loc[(problem, BASELINE), unit]
            for problem in table.index.get_level_values("problem")
            if (problem, BASELINE) in table.index
        }
        per_problem = table.index.get_level_values("problem").map(baseline).astype(float)
        table[ratio] = table[unit] / per_problem
    order = ["ms / step", "step time / SGD-m", "s / epoch", "epoch time / SGD-m", *memory]
    return _ordered_index(table[[name for name in order if name in table]])


def results_table(results: Results) -> pd.DataFrame:
    """Per (problem, method) at its chosen setting: the setting, its tuning budget
    (analysis.budgets), its seeds per status, the medians over its completed seeds of the
    losses and accuracy, and the time to target."""
    runs = results.compared
    if runs.empty:
        return pd.DataFrame()
    grouped = runs.groupby(["problem", "method"])
    table = pd.DataFrame({"setting": grouped["setting"].first(), "seeds": grouped.size()})
    table["tuning"] = budgets(runs)
    for status in STATUSES:
        table[status] = grouped["status"].apply(lambda s, status=status: int((s == status).sum()))
    completed = runs[runs["status"] == "completed"].groupby(["problem", "method"])
    # losses and accuracies of completed seeds only: a diverged or failed run's last
    # evaluation is not a result, and an unfinished run's values are not final yet
    for name, column, scale in (
        ("final train loss", "final.train/full_loss", 1.0),
        ("best train loss", "best.train/full_loss", 1.0),
        ("best test accuracy (%)", "best.test/accuracy", 100.0),
    ):
        if column in runs:
            table[name] = completed[column].median() * scale
    to_target = method_time_to_target(results.per_run, runs)
    table = table.join(to_target.rename(columns=_TARGET_COLUMNS))
    return _ordered_index(table.dropna(axis=1, how="all"))


_TARGET_COLUMNS = {
    "target": "target",
    "epochs_to_target": "epochs to target",
    "time_to_target": "time to target (s)",
}


def target_costs(results: Results, column: str) -> pd.DataFrame:
    """Problems x methods: the median `column` (time_to_target or epochs_to_target)."""
    medians = method_time_to_target(results.per_run, results.compared)
    return medians[column].unstack("method")


def profile_table(
    results: Results, column: str, taus: Sequence[float] = TABLE_TAUS
) -> pd.DataFrame:
    """Rows τ, columns methods: the fraction of problems within τ of the best method."""
    costs = target_costs(results, column)
    if costs.empty:
        return pd.DataFrame()
    profile = performance_profile(costs, np.asarray(taus, dtype=float))
    profile = profile[sorted(profile.columns, key=sort_key)]
    profile.columns = [display_name(method) for method in profile.columns]
    return profile


def all_tables(results: Results) -> dict[str, pd.DataFrame]:
    return {
        "cost": cost_table(results),
        "results": results_table(results),
        "profile_time": profile_table(results, "time_to_target"),
        "profile_epochs": profile_table(results, "epochs_to_target"),
    }


def to_markdown(table: pd.DataFrame) -> str:
    """The index as leading columns and empty cells for NaN (not computed: e.g. the test
    accuracy of an autoencoder); inf stays inf (a missed target)."""
    if table.empty:
        return "(no runs)"
    flat = table.reset_index()
    flat = flat.astype(object).where(flat.notna(), "")
    return flat.to_markdown(index=False, floatfmt=".4g")


def write_table(table: pd.DataFrame, directory: Path, name: str) -> list[Path]:
    """<directory>/<name>.md and .csv; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    markdown, csv = directory / f"{name}.md", directory / f"{name}.csv"
    markdown.write_text(to_markdown(table) + "\n")
    table.to_csv(csv)
    return [markdown, csv]


def parse_targets(items: Sequence[str]) -> dict[str, float]:
    """["problem=value", ...] -> {problem: value}."""
    targets = {}
    for item in items:
        problem, _, value = item.partition("=")
        if not value:
            raise argparse.ArgumentTypeError(f"--target wants problem=value, got {item!r}")
        targets[problem] = float(value)
    return targets


def main(argv: list[str] | None = None) -> None:
    from analysis.load import load

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", required=True, help="folder, wandb:entity/project, ...")
    parser.add_argument("--out", type=Path, help="write <name>.md and <name>.csv here")
    parser.add_argument("--target", nargs="*", default=[], help="problem=value overrides")
    parser.add_argument(
        "--select",
        default="paper",
        choices=LOSS_CHOICES,
        help="choose each method's setting by each problem's paper rule (default), or by the "
        "full training loss or the epoch-end EMA (autoencoders; classifiers: test accuracy)",
    )
    args = parser.parse_args(argv)
    try:
        sweep = load(args.runs)
    except SourceError as error:
        parser.error(str(error))
    results = Results.of(sweep, targets=parse_targets(args.target), select_by=args.select)
    for name, table in all_tables(results).items():
        print(f"## {name}\n\n{to_markdown(table)}\n")
        if args.out:
            write_table(table, args.out, name)


if __name__ == "__main__":
    main()
