"""One markdown page with every figure and table of a sweep.

    python -m analysis.report --runs runs/ --out reports/runs
    python -m analysis.report --runs wandb:my-team/sobench --out reports/sobench

Writes <out>/report.md, <out>/figures/<name>.png and .pdf (every figure of
analysis.figures that has something to draw) and <out>/tables/<name>.md and .csv. The page
lists the runs that did not complete, warns once per problem whose runs ran on an overloaded
machine (their times are not to be trusted), gives the selection rule, grid and score of
every setting, then the figures (with what each could not draw) and the tables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis.aggregate import BANDS
from analysis.figures import FIGURE_NAMES, draw
from analysis.figures.common import LOSS_METRICS, Options, save
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
    "tnt_fig2": "TNT paper, Figure 2: CNNs, training loss and test error.",
    "kbfgs_fig": "K-BFGS paper, main figure: autoencoders, training loss.",
    "tengrad_fig": "TENGraD paper: test accuracy and training loss against time.",
    "tnt_ef": "TNT with the sampled Fisher vs the empirical Fisher (TNT-EF).",
    "seed_bands": "Every seed of the chosen settings, their median and band.",
    "sensitivity": "Selection score over the grid; grey cells diverged; outlined: chosen.",
    "profile": "Dolan-Moré performance profiles of the time and epochs to the target.",
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


def write_report(results: Results, out: Path, options: Options, formats: list[str]) -> Path:
    sweep = results.sweep
    lines = [f"# Sweep report: {sweep.source}", ""]
    lines += status_lines(sweep.runs)
    lines += load_lines(results)
    lines += [
        "Training time is the training clock only (evaluation and warm start excluded).",
        f"Curves: median over the completed seeds of each chosen setting; band: "
        f"{options.band}; training loss: {LOSS_METRICS[options.loss]}.",
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
        lines += [f"### {name}", "", FIGURE_CAPTIONS.get(name, ""), "", f"![{name}]({image})"]
        others = ", ".join(f"[{p.suffix[1:]}]({p.relative_to(out)})" for p in paths[1:])
        lines += [f"({others})" if others else ""]
        lines += [f"- missing: {note}" for note in drawn.missing] + [""]
    lines += ["## Tables", ""]
    targets = ", ".join(f"{problem}: {value:.5g}" for problem, value in results.targets.items())
    lines += [
        f"Targets: {targets or 'none'} (training loss <= target for autoencoders, "
        "test accuracy >= target for classifiers).",
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
    parser.add_argument("--loss", default="full", choices=list(LOSS_METRICS))
    parser.add_argument("--format", nargs="+", default=["png", "pdf"], choices=["png", "pdf"])
    parser.add_argument("--target", nargs="*", default=[], help="problem=value overrides")
    args = parser.parse_args(argv)
    sweep = load_for_command(args.runs)
    if sweep is None:
        return 1
    out = args.out or Path("reports") / Path(str(args.runs).split(":")[-1]).name
    results = Results.of(sweep, targets=parse_targets(args.target))
    page = write_report(results, out, Options(band=args.band, loss=args.loss), args.format)
    print(f"report: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
