"""One markdown page with every figure and table of a sweep.

    python -m analysis.report --runs runs/ --out reports/runs
    python -m analysis.report --runs wandb:my-team/sobench --out reports/sobench
    python -m analysis.report --runs runs/ --loss full      # sobench's full-loss view and rule

Writes <out>/report.md, <out>/figures/<name>.png and .pdf (every figure of
analysis.figures that has something to draw) and <out>/tables/<name>.md and .csv. The page
lists the runs that did not complete, warns once per problem whose runs ran on an overloaded
machine (their times are not to be trusted), gives the selection rule (and whose rule it
is), grid and score of every setting, then the figures (with what each drew and could not
draw) and the tables. By default each problem of a paper is chosen by its paper's rule and
drawn in its paper's quantity (analysis.papers), so "Best settings" and the figures agree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis.aggregate import BANDS
from analysis.budgets import budget_warnings
from analysis.figures import FIGURE_NAMES, draw
from analysis.figures.common import Options, add_view_arguments, save
from analysis.load import load_for_command
from analysis.machine_load import overload_warnings
from analysis.results import Results
from analysis.selection import selection_markdown
from analysis.style import display_name
from analysis.sweep import STATUSES
from analysis.tables import all_tables, parse_targets, to_markdown, write_table

FIGURE_CAPTIONS = {
    "overview": "Every problem and method of the sweep at its chosen setting.",
    "tnt_fig1": "TNT paper, Figure 1: autoencoders, training loss against epochs and time.",
    "tnt_fig2": "TNT paper, Figure 2: CNNs, training loss and test error against epochs and time.",
    "kbfgs_fig": "K-BFGS paper, main figure: autoencoders, training loss against epochs and time.",
    "tengrad_fig": "TENGraD paper: test accuracy and training loss against time.",
    "tnt_ef": "TNT with the sampled Fisher vs the empirical Fisher (TNT-EF).",
    "seed_bands": "Every seed of the chosen settings, their median and band.",
    "sensitivity": "Selection score over the grid; grey cells diverged; outlined: chosen.",
    "profile": "Dolan-Moré performance profiles of the time and epochs to the target.",
}
LOSS_TEXT = {
    "paper": "each problem's paper quantity (TNT: the epoch-end EMA of the mini-batch losses; "
    "K-BFGS: the full training loss + 0.5 tau ||w||^2; others: the full training loss)",
    "full": "the full training-set loss",
    "ema": "the epoch-end EMA of the mini-batch losses",
}
SELECT_TEXT = {
    "paper": "chosen by the rule of each problem's paper (sobench's for problems of no paper)",
    "full": "autoencoders chosen by the lowest full training loss, classifiers by the highest "
    "test accuracy",
    "ema": "autoencoders chosen by the lowest epoch-end EMA of the mini-batch losses, "
    "classifiers by the highest test accuracy",
}
TABLE_CAPTIONS = {
    "cost": "Time per step and per epoch (training clock), relative to SGD-m on the same "
    "problem; optimizer state and peak memory at the last evaluation. Medians over the seeds "
    "of the chosen setting.",
    "results": "Chosen setting, seeds per status, final and best training loss and best test "
    "accuracy (median over completed seeds), and epochs and training seconds to the target (first "
    "evaluation that reached it; inf when missed, or diverged first; median over seeds, misses "
    "as inf).",
    "profile_time": "Performance profile of the time to target: the fraction of problems on "
    "which each method is within a factor τ of the fastest.",
    "profile_epochs": "Performance profile of the epochs to target.",
}


def status_lines(runs: pd.DataFrame) -> list[str]:
    counts = runs["status"].value_counts()
    text = ", ".join(f"{counts.get(status, 0)} {status}" for status in STATUSES)
    lines = [f"Runs: {len(runs)} ({text}).", ""]
    unfinished = runs[runs["status"] != "completed"]
    if unfinished.empty:
        return lines
    columns = ["problem", "method", "seed", "status", "steps", "diverged_at_step", "error"]
    table = unfinished[[c for c in columns if c in unfinished]].assign(
        method=unfinished["method"].map(display_name)
    )
    lines += [
        "Runs that did not complete (kept, and left out of curves and scores as described):",
        "",
        table.to_markdown(index=False),
        "",
    ]
    return lines


def load_lines(results: Results) -> list[str]:
    """One warning per problem whose compared runs (those the curves and tables show) ran on
    an overloaded machine: their times and time ratios are not to be trusted."""
    warnings = overload_warnings(results.compared)
    if not warnings:
        return []
    return [f"- **{problem}**: {text}" for problem, text in warnings.items()] + [""]


def budget_lines(results: Results) -> list[str]:
    """One warning per problem whose compared methods had different tuning budgets."""
    warnings = budget_warnings(results.compared)
    if not warnings:
        return []
    return [f"- **{problem}**: {text}" for problem, text in warnings.items()] + [""]


def write_report(results: Results, out: Path, options: Options, formats: list[str]) -> Path:
    sweep = results.sweep
    lines = [f"# Sweep report: {sweep.source}", ""]
    lines += status_lines(sweep.runs)
    lines += load_lines(results)
    lines += budget_lines(results)
    lines += [
        "Training time is the training clock only (evaluation and warm start excluded); the "
        "time axes are said under each figure.",
        f"Curves: median over the completed seeds of each chosen setting; band: "
        f"{options.band}; training loss: {LOSS_TEXT[options.loss]}.",
        f"Settings: {SELECT_TEXT[results.select_by]}; each problem's rule, and whose it is, under "
        '"Best settings".',
        "",
    ]
    lines += ["## Best settings", "", selection_markdown(results.selection), ""]
    lines += ["## Figures", ""]
    for name in FIGURE_NAMES:
        drawn = draw(name, results, options)
        if drawn.figure is None:
            lines += [f"### {name}", "", f"Not drawn: {'; '.join(drawn.missing)}.", ""]
            continue
        paths = save(drawn.figure, out / "figures", name, formats)
        image = paths[0].relative_to(out)
        caption = " ".join(part for part in (FIGURE_CAPTIONS.get(name, ""), drawn.caption) if part)
        lines += [f"### {name}", "", caption, "", f"![{name}]({image})"]
        others = ", ".join(f"[{p.suffix[1:]}]({p.relative_to(out)})" for p in paths[1:])
        lines += [f"({others})" if others else ""]
        lines += [f"- missing: {note}" for note in drawn.missing] + [""]
    lines += ["## Tables", ""]
    targets = ", ".join(f"{problem}: {value:.5g}" for problem, value in results.targets.items())
    lines += [
        f"Targets: {targets or 'none'} (the value of each problem's selection rule: its "
        "training loss <= target for autoencoders, test accuracy >= target for classifiers).",
        "",
    ]
    for name, table in all_tables(results).items():
        markdown, csv = write_table(table, out / "tables", name)
        lines += [
            f"### {name}",
            "",
            TABLE_CAPTIONS[name],
            "",
            to_markdown(table),
            "",
            f"([csv]({csv.relative_to(out)}), [md]({markdown.relative_to(out)}))",
            "",
        ]
    page = out / "report.md"
    page.write_text("\n".join(lines))
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--runs",
        default="runs",
        help="folder, wandb:entity/project or wandb-offline:folder (default: runs)",
    )
    parser.add_argument("--out", type=Path, help="default: reports/<name of the source>")
    parser.add_argument("--band", default="minmax", choices=BANDS)
    add_view_arguments(parser)
    parser.add_argument("--format", nargs="+", default=["png", "pdf"], choices=["png", "pdf"])
    parser.add_argument("--target", nargs="*", default=[], help="problem=value overrides")
    args = parser.parse_args(argv)
    sweep = load_for_command(args.runs)
    if sweep is None:
        return 1
    out = args.out or Path("reports") / Path(str(args.runs).split(":")[-1]).name
    results = Results.of(
        sweep, targets=parse_targets(args.target), select_by=args.select or args.loss
    )
    options = Options(band=args.band, loss=args.loss, clock=args.clock)
    page = write_report(results, out, options, args.format)
    print(f"report: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
