"""Sensitivity heat maps (appendix style): for each (problem, method) with more than one
setting, the selection score of every setting (median over seeds of the best value of the
rule's training loss, or of the best test accuracy in %) on the grid, learning rate along x
and the second grid key (damping, epsilon, ...) along y. Cells whose setting diverged or
failed on a seed are grey and read "div."; the chosen setting is outlined. With more than
two grid keys, the others are held at the chosen setting's values (said in the panel title)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from analysis.figures.common import DEFAULT_OPTIONS, Drawn, Options, add_note, new_figure
from analysis.results import Results
from analysis.selection import grid_columns, short
from analysis.style import display_name, metric_label, ordered, problem_title
from analysis.sweep import matching


def _axes_keys(grid: list[str]) -> tuple[str, str | None]:
    """The learning rate along x when it is on the grid, the next key along y."""
    lr = [column for column in grid if column.endswith(".lr")]
    first = lr[0] if lr else grid[0]
    rest = [column for column in grid if column != first]
    return first, (rest[0] if rest else None)


def sensitivity_matrix(
    results: Results, problem: str, method: str
) -> tuple[pd.DataFrame, str, str | None, dict]:
    """(score matrix with index = y values and columns = x values, x key, y key, the values
    at which further grid keys are held). Diverged settings hold ±inf."""
    runs = results.sweep.runs
    runs = runs[(runs["problem"] == problem) & (runs["method"] == method)]
    grid = grid_columns(runs)
    settings = results.selection.settings
    settings = settings[(settings["problem"] == problem) & (settings["method"] == method)]
    values = runs.groupby("group")[grid].first()
    scored = values.join(settings.set_index("group")[["score", "chosen"]])
    x_key, y_key = _axes_keys(grid)
    held = {}
    chosen = scored[scored["chosen"]]
    for column in grid:
        if column not in (x_key, y_key) and not chosen.empty:
            held[short(column)] = chosen[column].iloc[0]
            scored = scored[scored[column] == chosen[column].iloc[0]]
    y = scored[y_key] if y_key else pd.Series("", index=scored.index)
    matrix = scored.assign(y=y).pivot_table(
        index="y", columns=x_key, values="score", aggfunc="first", dropna=False
    )
    return matrix.sort_index().sort_index(axis=1), x_key, y_key, held


def sensitivity_figure(results: Results, options: Options = DEFAULT_OPTIONS) -> Drawn:
    runs = results.sweep.runs
    panels = []
    problems, _ = matching(results.sweep.problems, options.problems or results.sweep.problems)
    for problem in problems:
        of_problem = runs[runs["problem"] == problem]
        for method in ordered(of_problem["method"]):
            if options.methods and method not in options.methods:
                continue
            if grid_columns(of_problem[of_problem["method"] == method]):
                panels.append((problem, method))
    if not panels:
        return Drawn(None, ["no (problem, method) with more than one setting"])
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure = new_figure(rows, columns, width=4.2, height=3.4)
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, axes in enumerate(grid.flat):
        if index >= len(panels):
            axes.set_axis_off()
            continue
        problem, method = panels[index]
        _draw_panel(figure, axes, results, problem, method)
    figure.suptitle(
        "Sensitivity: selection score of every setting (median over seeds)", fontsize=11
    )
    missing: list[str] = []
    add_note(figure, missing)
    return Drawn(figure, missing)


def _draw_panel(figure: Figure, axes: Axes, results: Results, problem: str, method: str) -> None:
    matrix, x_key, y_key, held = sensitivity_matrix(results, problem, method)
    rule = results.selection.rules[problem]
    scale = 100.0 if rule.maximize else 1.0
    data = matrix.to_numpy(dtype=float) * scale
    # the better end of the scale is bright for both rules; diverged cells are grey
    cmap = colormaps["viridis" if rule.maximize else "viridis_r"].with_extremes(bad="0.8")
    image = axes.imshow(np.ma.masked_invalid(data), cmap=cmap, aspect="auto", origin="lower")
    for (i, j), value in np.ndenumerate(data):
        text = f"{value:.4g}" if np.isfinite(value) else ("div." if np.isinf(value) else "")
        axes.text(j, i, text, ha="center", va="center", fontsize=9)
    axes.set_xticks(range(matrix.shape[1]), [_tick(value) for value in matrix.columns])
    axes.set_yticks(range(matrix.shape[0]), [_tick(value) for value in matrix.index])
    axes.set_xlabel(short(x_key))
    axes.set_ylabel(short(y_key) if y_key else "")
    title = f"{problem_title(problem)}\n{display_name(method)}"
    if held:
        title += "\n(" + ", ".join(f"{k}={v}" for k, v in held.items()) + ")"
    axes.set_title(title, fontsize=9)
    chosen = results.selection.best_groups().get((problem, method))
    if chosen is not None:
        _outline_chosen(axes, results, matrix, x_key, y_key, chosen)
    label = "best test accuracy (%)" if rule.maximize else f"best {metric_label(rule.metric)}"
    figure.colorbar(image, ax=axes, label=label, shrink=0.85)


def _tick(value: object) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _outline_chosen(
    axes: Axes,
    results: Results,
    matrix: pd.DataFrame,
    x_key: str,
    y_key: str | None,
    group: str,
) -> None:
    runs = results.sweep.runs
    run = runs[runs["group"] == group].iloc[0]
    j = list(matrix.columns).index(run[x_key])
    i = list(matrix.index).index(run[y_key]) if y_key else 0
    axes.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
