"""Seed bands (appendix style): one row per problem, one panel per method, against epochs.
In each panel every completed seed of the chosen setting as a thin line, their median as a
thick line and the band (min-max or bootstrap) shaded, so the spread over seeds is visible.
The metric is the one the problem's selection rule uses: its training loss (log scale) for
autoencoders (the full loss, or the paper's epoch-end EMA or K-BFGS objective), the test
error (%) for classifiers."""

from __future__ import annotations

from analysis.figures.common import (
    BAND_TEXT,
    DEFAULT_OPTIONS,
    Drawn,
    Options,
    add_note,
    draw_band,
    log_scale_for,
    new_figure,
)
from analysis.results import Results
from analysis.selection import HIGHEST_TEST_ACCURACY
from analysis.style import (
    PERCENT_METRICS,
    colour,
    display_name,
    metric_label,
    ordered,
    problem_title,
)
from analysis.sweep import matching


def seed_bands_figure(results: Results, options: Options = DEFAULT_OPTIONS) -> Drawn:
    problems, absent = matching(results.sweep.problems, options.problems or results.sweep.problems)
    missing = [f"{name}: no runs" for name in absent]
    runs = results.compared
    rows = []
    for problem in problems:
        methods = ordered(runs.loc[runs["problem"] == problem, "method"])
        methods = [m for m in methods if options.methods is None or m in options.methods]
        rows.append((problem, methods))
    width = max((len(methods) for _, methods in rows), default=0)
    if not width:
        return Drawn(None, missing)
    figure = new_figure(len(rows), width, width=3.0, height=2.6)
    grid = figure.subplots(len(rows), width, squeeze=False)
    for row, (problem, methods) in enumerate(rows):
        rule = results.selection.rules[problem]
        metric = "test/error" if rule.column == HIGHEST_TEST_ACCURACY.column else rule.metric
        scale = 100.0 if metric in PERCENT_METRICS else 1.0
        for column in range(width):
            axes = grid[row][column]
            if column >= len(methods):
                axes.set_axis_off()
                continue
            method = methods[column]
            metrics = results.metrics_of(problem, method)
            completed = metrics[metrics["status"] == "completed"] if len(metrics) else metrics
            axes.set_title(f"{problem_title(problem)}\n{display_name(method)}", fontsize=9)
            if completed.empty or metric not in completed:
                axes.text(0.5, 0.5, "no completed seed", ha="center", transform=axes.transAxes)
                missing.append(f"{problem}: {display_name(method)}: no completed seed")
                continue
            for _, seed_run in completed.dropna(subset=[metric]).groupby("run_id"):
                axes.plot(
                    seed_run["epoch"],
                    seed_run[metric] * scale,
                    color=colour(method),
                    linewidth=0.7,
                    alpha=0.5,
                )
            draw_band(axes, completed, metric, "epoch", method, options.band)
            seeds = completed["run_id"].nunique()
            axes.set_xlabel(f"epoch ({seeds} seed{'s' if seeds > 1 else ''})")
            axes.set_ylabel(metric_label(metric))
            if log_scale_for(metric):
                axes.set_yscale("log")
            axes.grid(True, which="both", alpha=0.3)
    figure.suptitle(
        f"Seeds of the chosen settings\n(thin: each seed; thick: median; band: "
        f"{BAND_TEXT[options.band]})",
        fontsize=11,
    )
    add_note(figure, missing)
    return Drawn(figure, missing)
