"""Dolan-Moré performance profiles (analysis.profiles) of the time and of the epochs to the
target over the sweep's problems: rho_s(τ) for τ from 1 to 4, one step curve per method."""

from __future__ import annotations

from analysis.figures.common import (
    DEFAULT_OPTIONS,
    Drawn,
    Options,
    add_note,
    method_legend,
    new_figure,
)
from analysis.profiles import TAU_MAX, performance_profile
from analysis.results import Results
from analysis.style import colour, display_name, ordered
from analysis.sweep import matching
from analysis.tables import target_costs

PANELS = {"time_to_target": "training time to target", "epochs_to_target": "epochs to target"}


def profile_figure(results: Results, options: Options = DEFAULT_OPTIONS) -> Drawn:
    costs = {column: target_costs(results, column) for column in PANELS}
    if options.problems:
        costs = {
            key: cost[cost.index.isin(matching(list(cost.index), options.problems)[0])]
            for key, cost in costs.items()
        }
    if all(cost.empty for cost in costs.values()):
        return Drawn(None, ["no problem with a target"])
    figure = new_figure(1, len(PANELS), width=4.2, height=3.2)
    methods: list[str] = []
    for axes, (column, title) in zip(figure.subplots(1, len(PANELS)), PANELS.items(), strict=True):
        cost = costs[column]
        if options.methods:
            cost = cost[[m for m in cost.columns if m in options.methods]]
        profile = performance_profile(cost)
        methods = ordered(profile.columns)
        for method in methods:
            axes.step(
                profile.index,
                profile[method],
                where="post",
                color=colour(method),
                label=display_name(method),
                linewidth=1.6,
            )
        axes.set_xlim(1.0, TAU_MAX)
        axes.set_ylim(-0.03, 1.03)  # a method at 0 or 1 stays visible
        axes.set_xlabel("τ (ratio to the best method)")
        axes.set_ylabel("fraction of problems within τ")
        axes.set_title(f"{title} ({len(cost)} problem{'s' if len(cost) != 1 else ''})", fontsize=10)
        axes.grid(True, alpha=0.3)
    method_legend(figure, methods)
    figure.suptitle("Performance profiles (Dolan-Moré); a missed target never counts", fontsize=11)
    missing: list[str] = []
    add_note(figure, missing)
    return Drawn(figure, missing)
