"""Curve figures: one row per problem, one column per (metric, x axis); in each panel one
median curve and band per method at its chosen setting (analysis.results), over the seeds
that completed. Training losses on a log scale; test error and accuracy in %.

Problems without runs, methods without a completed run of their chosen setting, and seeds
left out (diverged, failed, still running) are listed under the panels; what is there is
drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from analysis.aggregate import Axis
from analysis.figures.common import (
    BAND_TEXT,
    DEFAULT_OPTIONS,
    LOSS,
    Drawn,
    Options,
    add_note,
    draw_band,
    log_scale_for,
    method_legend,
    new_figure,
)
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
    axes: tuple[Axis, ...] = ("epoch", "time")


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
    panels = [(metric, axis) for metric in spec.metrics for axis in spec.axes]
    figure = new_figure(len(problems), len(panels))
    grid = figure.subplots(len(problems), len(panels), squeeze=False)
    drawn_methods: set[str] = set()
    for row, problem in enumerate(problems):
        for method in spec.methods:
            missing += _seed_notes(results, problem, method)
        metrics = results.sweep.metrics
        problem_metrics = metrics[metrics["problem"] == problem]
        for column, (name, axis) in enumerate(panels):
            axes = grid[row][column]
            metric = options.metric(name)
            axes.set_title(problem_title(problem), fontsize=10)
            if metric not in problem_metrics or problem_metrics[metric].isna().all():
                axes.set_axis_off()
                axes.text(
                    0.5,
                    0.5,
                    f"no {metric_label(metric)} logged",
                    ha="center",
                    transform=axes.transAxes,
                    fontsize=9,
                )
                continue
            for method in spec.methods:
                of_method = results.metrics_of(problem, method)
                if of_method.empty:
                    continue
                completed = of_method[of_method["status"] == "completed"]
                if draw_band(axes, completed, metric, axis, method, options.band):
                    drawn_methods.add(method)
            axes.set_xlabel(AXIS_LABELS[axis])
            axes.set_ylabel(metric_label(metric))
            if log_scale_for(metric):
                axes.set_yscale("log")
            axes.grid(True, which="both", alpha=0.3)
    method_legend(figure, ordered(drawn_methods))
    figure.suptitle(
        f"{spec.title}\n(median over seeds, band: {BAND_TEXT[options.band]})", fontsize=11
    )
    add_note(figure, missing)
    return Drawn(figure, missing)
