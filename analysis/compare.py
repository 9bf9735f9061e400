"""The quick comparison of `make demo`: per problem, one row per method at its chosen setting,
and the training loss of those runs against epochs and against training time.

    python -m analysis.compare runs/demo --figure figures/demo.png

It groups and aggregates as `python -m analysis.report` does (analysis.results): each
(problem, method) is shown at its best setting by the problem's rule (by default its paper's,
analysis.papers; sobench's for `demo`), said under the table, and every number is a
cell of the report's `results` or `cost` table (medians over that setting's seeds: losses over
the completed seeds, the time per step over every seed that took steps). Under each table it
says what was left out (the method's other settings, unfinished runs, runs that ended badly)
and warns when a shown run's machine was overloaded. Time ratios are only meaningful between
runs of the same sweep on the same machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis.budgets import budget_warnings
from analysis.figures.common import LOSS, Drawn, Options, add_view_arguments
from analysis.figures.curves import CurveSpec, curve_figure
from analysis.load import load_for_command
from analysis.machine_load import overload_warnings
from analysis.results import Results
from analysis.style import display_name, ordered, sort_key
from analysis.sweep import config_text
from analysis.tables import cost_table, results_table, to_markdown
from contract.records import COMPLETED, ENDED_BADLY, STATUSES, UNFINISHED

# the columns of the report's tables that the quick comparison shows, in this order
RESULT_COLUMNS = (
    "setting",
    "tuning",
    "seeds",
    *STATUSES,
    "final train loss",
    "best train loss",
    "best test accuracy (%)",
)
COST_COLUMNS = ("ms / step", "step time / SGD-m")
# what the losses and the step times are medians over (tables.results_table, cost_table)
MEDIANS = "Losses: median over the completed seeds; ms / step: over every seed that took steps."


def comparison_tables(results: Results) -> dict[str, pd.DataFrame]:
    """Per problem, one row per method (display name) at its chosen setting: the cells of the
    report's results and cost tables in RESULT_COLUMNS and COST_COLUMNS. Columns no method
    has a value in (the test accuracy of an autoencoder) and status columns where no seed has
    that status are dropped, so the table stays short."""
    table = _select(results_table(results), RESULT_COLUMNS)
    cost = _select(cost_table(results), COST_COLUMNS)
    if not cost.empty:  # every run failed before its first step: no cost table at all
        table = table.join(cost)
    tables = {}
    for problem in table.index.get_level_values("problem").unique():
        rows = table.xs(problem, level="problem").dropna(axis=1, how="all")
        unused = [s for s in STATUSES if s != COMPLETED and s in rows and not rows[s].any()]
        tables[problem] = rows.drop(columns=unused)
    return tables


def _select(table: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    return table[[column for column in columns if column in table]]


def _named(runs: pd.DataFrame) -> str:
    """'Adam seed 3 (interrupted), TNT seed 1 (running)', in the papers' method order."""
    runs = runs.assign(order=runs["method"].map(sort_key)).sort_values(["order", "seed"])
    return ", ".join(
        f"{display_name(row.method)} seed {config_text(row.seed)} ({row.status})"
        for row in runs.itertuples()
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def left_out_lines(results: Results, problem: str) -> list[str]:
    """What the table of `problem` does not show, or shows without its losses: the runs of
    each method's other settings (their scores are in the report's "Best settings"), and the
    runs of the chosen settings that are unfinished (running, interrupted) or ended badly
    (diverged, failed), whose losses are no result."""
    runs = results.sweep.runs[results.sweep.runs["problem"] == problem]
    compared = results.compared[results.compared["problem"] == problem]
    lines = []
    others = runs[~runs["run_id"].isin(compared["run_id"])]
    if not others.empty:
        counts = [
            f"{display_name(method)}: {_count(len(members), 'run')} of "
            f"{_count(members['group'].nunique(), 'other setting')}"
            for method, members in sorted(others.groupby("method"), key=lambda m: sort_key(m[0]))
        ]
        lines.append(
            f"Not shown: {'; '.join(counts)} (their scores: `python -m analysis.report`, "
            '"Best settings").'
        )
    for statuses, what in ((UNFINISHED, "unfinished"), (ENDED_BADLY, "ended badly")):
        members = compared[compared["status"].isin(statuses)]
        if not members.empty:
            lines.append(f"Left out of the losses, {what}: {_named(members)}.")
    return lines


def rule_line(results: Results, problem: str) -> str:
    """Which rule chose the settings of `problem`, and whose rule it is."""
    rule = results.selection.rules[problem]
    return f"Settings chosen by the {rule.text} (median over seeds): {rule.why}."


def comparison_markdown(results: Results) -> str:
    """The printed comparison: per problem a heading, the table, the rule that chose the
    settings, what was left out, and the warnings about unequal tuning budgets and overloaded
    machines."""
    warnings = overload_warnings(results.compared)
    unequal = budget_warnings(results.compared)
    parts = []
    for problem, table in comparison_tables(results).items():
        notes = [rule_line(results, problem), *left_out_lines(results, problem)]
        notes += [found[problem] for found in (unequal, warnings) if problem in found]
        table.index.name = "method"
        parts += [f"## {problem}", "", to_markdown(table), "", *notes, ""]
    parts.append(MEDIANS)
    return "\n".join(parts)


def loss_figure(
    results: Results, metric: str | None = None, options: Options | None = None
) -> Drawn:
    """`metric` (default: each problem's training loss under options.loss, by default its
    paper's quantity: the full training loss for `demo`) against epochs and training time, one
    row per problem: the median and band of each method's chosen setting over its completed
    seeds (the report's curve figures, analysis.figures.curves, drawn for every problem and
    method of the sweep)."""
    sweep = results.sweep
    spec = CurveSpec(
        "compare",
        sweep.source,
        tuple(sweep.problems),
        tuple(ordered(sweep.runs["method"])),
        (metric or LOSS,),
    )
    return curve_figure(results, spec, options or Options())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.compare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "runs", help="a folder of run directories (e.g. runs/demo), wandb:entity/project, ..."
    )
    parser.add_argument("--figure", type=Path, help="write the loss figure here (.png, .pdf)")
    parser.add_argument(
        "--metric", help="draw this metric (default: the training loss of --loss per problem)"
    )
    add_view_arguments(parser)
    args = parser.parse_args(argv)
    sweep = load_for_command(args.runs)
    if sweep is None:
        return 1
    results = Results.of(sweep, select_by=args.select or args.loss)
    print(comparison_markdown(results))
    if args.figure:
        drawn = loss_figure(results, args.metric, Options(loss=args.loss, clock=args.clock))
        if drawn.figure is None:
            print(f"\nno figure: {'; '.join(drawn.missing)}", file=sys.stderr)
            return 1
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        drawn.figure.savefig(args.figure, dpi=120)
        print(f"\nfigure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
