"""What every figure shares: drawing options, the result of a drawing (the Figure and what
was missing), the note that says what is missing, and writing PNG + PDF."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine

from analysis.aggregate import Axis, Band, seed_band
from analysis.style import PERCENT_METRICS, colour, display_name

LOSS = "loss"  # stands for the training loss chosen by Options.loss
LOSS_METRICS = {"full": "train/full_loss", "ema": "train/loss_ema"}
BAND_TEXT = {"minmax": "min-max over seeds", "bootstrap": "bootstrap 95% CI of the median"}
FORMATS = ("png", "pdf")


@dataclass(frozen=True)
class Options:
    band: Band = "minmax"
    loss: Literal["full", "ema"] = "full"
    problems: tuple[str, ...] | None = None  # replace a figure's problems
    methods: tuple[str, ...] | None = None  # replace a figure's methods

    def metric(self, name: str) -> str:
        return LOSS_METRICS[self.loss] if name == LOSS else name


DEFAULT_OPTIONS = Options()  # frozen: safe to share as a default argument


@dataclass
class Drawn:
    figure: Figure | None  # None when nothing at all could be drawn
    missing: list[str] = field(default_factory=list)


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
