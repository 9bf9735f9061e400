"""Curve figures: one row per problem, one column per (metric, x axis) (or, with
`row_per_metric`, one row per (problem, metric) and one column per x axis); in each panel one
median curve and band per method at its chosen setting (analysis.results), over the seeds
that completed. Training losses on a log scale (every panel when the CurveSpec says `log_y`, as
the papers draw them); test error and accuracy in %; x always linear.

The training loss (LOSS) of a problem is the one Options.loss picks for it (analysis.papers:
by default the quantity its paper plots); the time axis is the clock Options.clock picks
(analysis.figures.common.time_axis). The caption (Drawn.caption) says per problem what was
drawn and by which rule its settings were chosen, and which clock the time axis is.

Problems without runs, methods without a completed run of their chosen setting, seeds left
out (diverged, failed, still running), and a quantity its runs did not log (the K-BFGS
objective without model/weight_sq_norm) are listed under the panels; what is there is drawn,
and nothing else is drawn in place of a missing quantity.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from analysis.figures.common import (
    BAND_TEXT,
    DEFAULT_OPTIONS,
    LOSS,
    Drawn,
    Options,
    TimeAxis,
    add_note,
    draw_band,
    log_scale_for,
    method_legend,
    new_figure,
    time_axis,
)
from analysis.papers import NEEDS, Clock
from analysis.quantities import EMA_AT_EPOCH_ENDS, KBFGS_OBJECTIVE, KBFGS_TAU
from analysis.results import NONE_FINISHED, Results
from analysis.style import AXIS_LABELS, display_name, metric_label, ordered, problem_title
from analysis.sweep import matching


@dataclass(frozen=True)
class CurveSpec:
    name: str
    title: str
    problems: tuple[str, ...]
    methods: tuple[str, ...]
    metrics: tuple[str, ...] = (LOSS,)
    axes: tuple[str, ...] = ("epoch", "time")  # "time": the clock of Options.clock
    log_y: bool = False  # every panel on a log y scale (the papers' figures)
    row_per_metric: bool = False  # each problem's metrics in rows of their own (TNT Fig. 2)
    paper_clock: Clock = "wall"  # the clock its paper used (what Options.clock="auto" draws)


def _seed_notes(results: Results, problem: str, method: str) -> list[str]:
    runs = results.compared
    runs = runs[(runs["problem"] == problem) & (runs["method"] == method)]
    left_out = runs[runs["status"] != "completed"]["status"].value_counts()
    if runs.empty:
        return [f"{problem}: no runs of {display_name(method)}"]
    notes = []
    if (runs["setting"] == NONE_FINISHED).all():
        notes.append(f"{problem}: {display_name(method)}: no setting completed")
    elif len(left_out):
        counts = ", ".join(f"{n} {status}" for status, n in left_out.items())
        notes.append(f"{problem}: {display_name(method)}: seeds left out ({counts})")
    return notes


def quantity_text(metric: str) -> str:
    """What a drawn metric is, for captions."""
    return QUANTITY_TEXT.get(metric, metric_label(metric))


QUANTITY_TEXT = {
    EMA_AT_EPOCH_ENDS: "the epoch-end EMA (0.9/0.1) of the mini-batch training losses",
    KBFGS_OBJECTIVE: f"the full training loss + 0.5 tau ||w||^2 (tau = {KBFGS_TAU:g})",
    "train/full_loss": "the full training-set loss",
    "train/loss_ema": "the EMA of the mini-batch training losses",
}


def _not_logged(metric: str) -> str:
    needed = NEEDS.get(metric)
    return f"no {needed} logged" if needed else f"no {metric_label(metric)} logged"


def _caption(
    results: Results, spec: CurveSpec, problems: list[str], options: Options, clock: TimeAxis | None
) -> str:
    parts = []
    for problem in problems:
        drawn = [options.metric(name, problem) for name in spec.metrics]
        rule = results.selection.rules.get(problem)
        chosen = f"; settings chosen by the {rule.text}" if rule else ""
        parts.append(f"{problem}: {', '.join(map(quantity_text, drawn))}{chosen}.")
    if clock is not None:
        parts.append(f"Time axis: {clock.text}.")
    return " ".join(parts)


def curve_figure(results: Results, spec: CurveSpec, options: Options = DEFAULT_OPTIONS) -> Drawn:
    """The figure of `spec` (problems and methods replaced by options' when given)."""
    spec = replace(
        spec,
        problems=options.problems or spec.problems,
        methods=options.methods or spec.methods,
    )
    problems, absent = matching(results.sweep.problems, spec.problems)
    missing = [f"{name}: no runs" for name in absent]
    if not problems:
        return Drawn(None, missing)
    compared = results.compared
    drawn_runs = compared[
        compared["problem"].isin(problems) & compared["method"].isin(spec.methods)
    ]
    clock = time_axis(drawn_runs, spec.paper_clock, options.clock) if "time" in spec.axes else None
    axes_of = {"epoch": "epoch", "time": clock.axis if clock else "time"}
    # each problem's panels: one row of (metric, axis) pairs, or one row per metric
    panel_rows = [[(metric, axes_of[axis]) for axis in spec.axes] for metric in spec.metrics]
    if not spec.row_per_metric:
        panel_rows = [[panel for row in panel_rows for panel in row]]
    panels = [
        (row, column, panel)
        for row, panel_row in enumerate(panel_rows)
        for column, panel in enumerate(panel_row)
    ]
    rows_per_problem = len(panel_rows)
    figure = new_figure(len(problems) * rows_per_problem, len(panel_rows[0]))
    grid = figure.subplots(len(problems) * rows_per_problem, len(panel_rows[0]), squeeze=False)
    drawn_methods: set[str] = set()
    for index, problem in enumerate(problems):
        for method in spec.methods:
            missing += _seed_notes(results, problem, method)
        metrics = results.sweep.metrics
        problem_metrics = metrics[metrics["problem"] == problem]
        not_drawn: set[tuple[str, str]] = set()
        for row, column, (name, axis) in panels:
            axes = grid[index * rows_per_problem + row][column]
            metric = options.metric(name, problem)
            axes.set_title(problem_title(problem), fontsize=10)
            if metric not in problem_metrics or problem_metrics[metric].isna().all():
                axes.set_axis_off()
                axes.text(
                    0.5,
                    0.5,
                    f"{metric_label(metric)}:\n{_not_logged(metric)}",
                    ha="center",
                    transform=axes.transAxes,
                    fontsize=9,
                )
                not_drawn.add((metric, ""))
                continue
            for method in spec.methods:
                of_method = results.metrics_of(problem, method)
                if of_method.empty:
                    continue
                completed = of_method[of_method["status"] == "completed"]
                if draw_band(axes, completed, metric, axis, method, options.band):
                    drawn_methods.add(method)
                elif not completed.empty and completed[metric].isna().all():
                    not_drawn.add((metric, method))
            axes.set_xlabel(AXIS_LABELS[axis])
            axes.set_ylabel(metric_label(metric))
            axes.set_xscale("linear")
            if spec.log_y or log_scale_for(metric):
                axes.set_yscale("log")
            axes.grid(True, which="both", alpha=0.3)
        for metric, method in sorted(not_drawn):
            who = f"{display_name(method)}: " if method else ""
            missing.append(
                f"{problem}: {who}{metric_label(metric)} not drawn ({_not_logged(metric)})"
            )
    method_legend(figure, ordered(drawn_methods))
    title = f"{spec.title}\n(median over seeds, band: {BAND_TEXT[options.band]})"
    title += f"\n({clock.short})" if clock else ""
    figure.suptitle(title, fontsize=11)
    add_note(figure, missing)
    return Drawn(figure, missing, _caption(results, spec, problems, options, clock))
