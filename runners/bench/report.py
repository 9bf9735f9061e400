"""The benchmark's outputs: a markdown page (command, environment, one table per problem, the
harness overhead) and a stacked bar chart of each optimizer's per-phase cost."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from runners.bench.overhead import BASELINE

if TYPE_CHECKING:
    from runners.bench.run import BenchResult

ENVIRONMENT_KEYS = (
    "device_name",
    "device",
    "cpu_threads",
    "cpu_denormals_flushed",
    "torch",
    "cuda",
    "git_commit",
)


def write_markdown(result: BenchResult, command: str, path: Path) -> str:
    """The page; written to `path` and returned."""
    environment = result.environment
    lines = [
        f"`{command}`",
        "",
        "Environment: "
        + ", ".join(f"{key} {environment.get(key)}" for key in ENVIRONMENT_KEYS)
        + ". Synthetic inputs of each problem's shape (the cost of a step does not depend on "
        "the pixel values). Times are the median over interleaved rounds of the time per "
        "training step weighted by each optimizer's schedule (runners.bench.timing); phase "
        "columns are per step; `x sgd` is the median over rounds of the ratio to SGD-m in "
        "the same round; spread is the interquartile range over rounds. `floor x sgd` is the "
        "method's multiply-accumulates per step over SGD-m's, counted from the layer shapes "
        "and the schedule; `x floor` = `x sgd` / `floor x sgd`, the time per step over the "
        "time its MACs take at SGD-m's own rate (runners.bench.floors).",
        "",
    ]
    if result.settings.precision != "float32":
        lines += [
            f"trainer.precision={result.settings.precision}: every step's forward pass and loss "
            "under autocast, statistics, inverses and updates in float32.",
            "",
        ]
    if result.settings.optimizer_settings:
        settings = ", ".join(f"{k}={v}" for k, v in result.settings.optimizer_settings)
        lines += [f"Optimizer settings, wherever an optimizer has them: {settings}.", ""]
    for name, table in result.tables.items():
        problem = next(p for p in result.settings.problems if p.name == name)
        curvature_every, inverse_every = result.schedules[name]
        lines += [
            f"### {problem.describe()}; statistics every {curvature_every}, inverses every "
            f"{inverse_every} steps (each optimizer's own in its T1/T2 column: K-BFGS runs "
            "every step, as its authors, unless --schedule says otherwise)",
            "",
            table.to_markdown(index=False, floatfmt=".2f"),
            "",
        ]
        floors = result.floors.get(name)
        if floors is not None:
            lines += [
                f"Floors ({name}): multiply-accumulates per step by phase (GMAC), the achieved "
                "GFLOP/s, and each phase's time over its MACs' time at SGD-m's rate "
                "(runners.bench.floors)",
                "",
                floors.to_markdown(index=False, floatfmt=".2f"),
                "",
            ]
    if result.overhead is not None:
        overhead = result.overhead
        lines += [
            f"Harness overhead ({result.settings.problems[0].describe()}, SGD-m): runner "
            f"{1e3 * overhead.runner_s:.2f} ms/step against a bare PyTorch loop's "
            f"{1e3 * overhead.bare_s:.2f} ms/step: {100 * overhead.fraction:+.1f}%.",
            "",
        ]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def short_label(name: str) -> str:
    """An axis label: "shampoo:root_method=coupled_newton" as "shampoo\ncoupled_newton"."""
    base, *settings = name.split(":")
    return "\n".join([base, *(setting.partition("=")[2] for setting in settings)])


def phases_figure(result: BenchResult, phases: tuple[str, ...]) -> Figure:
    """One panel per problem: per optimizer, the time per step in each phase as a multiple
    of SGD-m's time per step, stacked, and the method's FLOP floor (its MACs at SGD-m's
    rate, runners.bench.floors) as a black bar where the table has it."""
    count = len(result.tables)
    figure, axes = plt.subplots(1, count, figsize=(5.0 * count + 1.5, 4.2), squeeze=False)
    colours = plt.get_cmap("tab10")
    for axis, (name, table) in zip(axes[0], result.tables.items(), strict=True):
        baseline_ms = (
            float(table.loc[table["optimizer"] == BASELINE, "ms/step"].iloc[0])
            if (table["optimizer"] == BASELINE).any()
            else float(table["ms/step"].min())
        )
        labels = [short_label(optimizer) for optimizer in table["optimizer"]]
        bottoms = [0.0] * len(table)
        for index, phase in enumerate(phases):
            heights = [
                0.0 if math.isnan(value) else value / baseline_ms for value in table[f"{phase} ms"]
            ]
            axis.bar(labels, heights, bottom=bottoms, label=phase, color=colours(index))
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        if f"floor x {BASELINE}" in table:
            axis.scatter(
                labels,
                table[f"floor x {BASELINE}"],
                marker="_",
                s=400,
                linewidths=2.5,
                color="black",
                zorder=3,
                label="FLOP floor",
            )
        axis.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        axis.set_title(name)
        axis.set_ylabel(f"time per step / {BASELINE}'s")
        axis.tick_params(axis="x", labelrotation=90, labelsize="small")
    handles, names = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, names, loc="center right", fontsize="small")
    figure.tight_layout(rect=(0.0, 0.0, 1.0 - 1.3 / figure.get_figwidth(), 1.0))
    return figure
