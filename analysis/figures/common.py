"""What every figure shares: drawing options, the result of a drawing (the Figure, what was
missing and its caption), the note that says what is missing, the clock of the time axis,
and writing PNG + PDF.

Options: `loss` picks the training loss drawn where a figure says LOSS (analysis.papers:
"paper", each problem's paper quantity, by default; "full"; "ema"); `clock` the time axis:
"auto" (the default: a paper figure whose paper used process time draws time/process_s when
every run it draws trained on the CPU, and the wall clock time/train_s otherwise; every
other figure the wall clock), "wall" or "process" for every figure."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine

from analysis.aggregate import Axis, Band, seed_band
from analysis.papers import LOSS_CHOICES, Clock, LossChoice, loss_metric
from analysis.style import PERCENT_METRICS, colour, display_name

LOSS = "loss"  # stands for the training loss chosen by Options.loss, per problem
BAND_TEXT = {"minmax": "min-max over seeds", "bootstrap": "bootstrap 95% CI of the median"}
FORMATS = ("png", "pdf")
ClockChoice = Literal["auto", "wall", "process"]
CLOCK_CHOICES: tuple[ClockChoice, ...] = ("auto", "wall", "process")
CLOCK_AXES: dict[Clock, Axis] = {"wall": "time", "process": "process"}
CLOCK_TEXT = {
    "wall": "wall-clock training time (time/train_s)",
    "process": "process CPU time (time/process_s)",
}


LOSS_HELP = (
    "paper (default): each problem's paper quantity (TNT: epoch-end EMA of the mini-batch "
    "losses; K-BFGS: full loss + 0.5 tau ||w||^2; else the full loss); full: the loss on the "
    "full training set; ema: the epoch-end EMA of the mini-batch losses"
)
SELECT_HELP = "choose each method's setting by this loss (default: the one of --loss)"
CLOCK_HELP = (
    "time axis: auto (default: process time for the TNT and K-BFGS figures when every run "
    "drawn trained on the CPU, else wall clock), wall (time/train_s), process (time/process_s)"
)


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    """--loss, --select and --clock, shared by analysis.figures, .report and .compare."""
    parser.add_argument("--loss", default="paper", choices=LOSS_CHOICES, help=LOSS_HELP)
    parser.add_argument("--select", choices=LOSS_CHOICES, help=SELECT_HELP)
    parser.add_argument("--clock", default="auto", choices=CLOCK_CHOICES, help=CLOCK_HELP)


@dataclass(frozen=True)
class Options:
    band: Band = "minmax"
    loss: LossChoice = "paper"
    clock: ClockChoice = "auto"
    problems: tuple[str, ...] | None = None  # replace a figure's problems
    methods: tuple[str, ...] | None = None  # replace a figure's methods

    def metric(self, name: str, problem: str) -> str:
        """The metric a panel of `problem` draws for `name` (LOSS: the training loss)."""
        return loss_metric(problem, self.loss) if name == LOSS else name


DEFAULT_OPTIONS = Options()  # frozen: safe to share as a default argument


@dataclass
class Drawn:
    figure: Figure | None  # None when nothing at all could be drawn
    missing: list[str] = field(default_factory=list)
    caption: str = ""  # what is drawn: quantities, how the settings were chosen, the clock


@dataclass(frozen=True)
class TimeAxis:
    axis: Axis  # of analysis.aggregate
    short: str  # for the figure's title
    text: str  # for the caption: which clock, and why


def time_axis(runs: pd.DataFrame, paper_clock: Clock, choice: ClockChoice) -> TimeAxis:
    """The clock of a figure's time panels (see the module docstring); `runs` are the runs
    it draws (their `device` column, analysis.sweep)."""
    on_cpu = _all_on_cpu(runs)
    if choice != "auto":
        caveat = "" if choice == "wall" or on_cpu else f"; {_not_on_cpu(runs)}"
        return TimeAxis(
            CLOCK_AXES[choice], f"time: {choice} clock", f"{CLOCK_TEXT[choice]}, asked for{caveat}"
        )
    if paper_clock == "wall":
        return TimeAxis("time", "time: wall clock", f"{CLOCK_TEXT['wall']}, sobench's clock")
    if on_cpu:
        return TimeAxis(
            "process",
            "time: process time, the paper's clock (CPU runs)",
            f"{CLOCK_TEXT['process']}, the paper's clock: every run drawn trained on the CPU",
        )
    return TimeAxis(
        "time",
        "time: wall clock (not all runs on the CPU)",
        f"{CLOCK_TEXT['wall']}, not the paper's process time: {_not_on_cpu(runs)}",
    )


def _on_cpu(device: object) -> bool:
    return isinstance(device, str) and device.startswith("cpu")


def _not_on_cpu(runs: pd.DataFrame) -> str:
    """Why process time may misread these runs: which of them did not (surely) run on the
    CPU."""
    devices = runs["device"] if "device" in runs else pd.Series(None, index=runs.index)
    known = sorted({d for d in devices if isinstance(d, str) and not _on_cpu(d)})
    unknown = int(devices.map(lambda d: not isinstance(d, str)).sum())
    parts = [f"runs on {', '.join(known)}"] if known else []
    if unknown:
        parts.append(f"{unknown} run{'s' if unknown > 1 else ''} of unknown device")
    return (
        f"{' and '.join(parts) or 'no runs'}, where process time would miss asynchronous GPU "
        "work (the device is known from environment.json, or a config device other than auto)"
    )


def _all_on_cpu(runs: pd.DataFrame) -> bool:
    if runs.empty or "device" not in runs:
        return False
    return bool(runs["device"].map(_on_cpu).all())


def new_figure(rows: int, columns: int, width: float = 3.6, height: float = 2.8) -> Figure:
    return Figure(figsize=(width * columns, height * rows + 0.9), layout="constrained")


def add_note(figure: Figure, missing: Sequence[str]) -> None:
    """Say under the panels what the figure could not draw."""
    if not missing:
        return
    lines = len(missing)
    inches = figure.get_figheight()
    bottom = min(0.4, (0.13 * lines + 0.08) / inches)
    engine = figure.get_layout_engine()
    if isinstance(engine, ConstrainedLayoutEngine):
        engine.set(rect=(0, bottom, 1, 1 - bottom))
    figure.text(0.01, 0.01, "Missing: " + "\n".join(missing), fontsize=7, va="bottom")


def draw_band(
    axes: Axes, metrics: pd.DataFrame, metric: str, axis: Axis, method: str, band: Band
) -> bool:
    """Median over the runs in `metrics` and its band, in the method's colour; False when
    there was nothing to draw."""
    curve = seed_band(metrics, metric, axis, band)
    if curve.empty:
        return False
    scale = 100.0 if metric in PERCENT_METRICS else 1.0
    axes.plot(
        curve["x"],
        curve["median"] * scale,
        color=colour(method),
        label=display_name(method),
        linewidth=1.6,
    )
    if (curve["low"] != curve["high"]).any():
        axes.fill_between(
            curve["x"],
            curve["low"] * scale,
            curve["high"] * scale,
            color=colour(method),
            alpha=0.2,
            linewidth=0,
        )
    return True


def log_scale_for(metric: str) -> bool:
    """Losses on a log scale, as in the papers; errors and accuracies linear, in %."""
    return "loss" in metric.rpartition("/")[2]


def method_legend(figure: Figure, methods: Sequence[str]) -> None:
    """One legend for the whole figure, in the papers' method order, inside its first
    drawn panel (figure-level legends outside the panels collide with the suptitle or the
    note of what is missing under constrained layout)."""
    from matplotlib.lines import Line2D

    panels = [axes for axes in figure.axes if axes.axison]
    if not methods or not panels:
        return
    handles = [Line2D([], [], color=colour(m), linewidth=2) for m in methods]
    labels = [display_name(m) for m in methods]
    panels[0].legend(handles, labels, fontsize=8, framealpha=0.8)


def save(
    figure: Figure, directory: Path, name: str, formats: Sequence[str] = FORMATS, dpi: int = 150
) -> list[Path]:
    """<directory>/<name>.<format> for each format; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for extension in formats:
        path = directory / f"{name}.{extension}"
        figure.savefig(path, dpi=dpi)
        paths.append(path)
    return paths
