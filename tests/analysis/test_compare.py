"""`python -m analysis.compare` (make demo): the comparison table and the loss figure, checked
number by number on runs with known curves (loading itself: test_load.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.compare import comparison_table, loss_figure, main
from analysis.load import load_metrics, load_summaries
from analysis.style import colour
from tests.analysis.run_records import write_run


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    write_run(root, "s0", "sgd", 0, [100, 80, 60], seconds_per_epoch=1.0)
    write_run(root, "s1", "sgd", 1, [100, 70, 50], seconds_per_epoch=3.0)
    write_run(root, "a0", "adam", 0, [100, 50, 40], seconds_per_epoch=2.0)
    write_run(root, "a1", "adam", 1, [100, 50, 30], seconds_per_epoch=4.0)
    write_run(root, "a2", "adam", 2, [100, 1e9, 1e9], seconds_per_epoch=9.0, status="diverged")
    return root


def test_comparison_table(runs: Path) -> None:
    table = comparison_table(load_summaries(runs))
    assert list(table.index) == ["SGD-m", "Adam"]  # the papers' order
    sgd, adam = table.loc["SGD-m"], table.loc["Adam"]
    assert (sgd["runs"], sgd["completed"], sgd["diverged"]) == (2, 2, 0)
    assert (adam["runs"], adam["completed"], adam["diverged"]) == (3, 2, 1)
    assert sgd["final train loss"] == 55  # median of 60 and 50
    assert adam["final train loss"] == 35  # the diverged run is not a result
    assert sgd["ms / step"] == pytest.approx(200.0)  # median of 100 and 300 ms
    # step cost counts every run that took steps, the diverged one included
    assert adam["ms / step"] == pytest.approx(400.0)  # median of 200, 400 and 900 ms
    assert adam["step time / SGD-m"] == pytest.approx(2.0)


def test_loss_figure_panels_and_curves(runs: Path) -> None:
    figure = loss_figure(load_metrics(runs))
    by_epoch, by_time = figure.axes
    assert by_epoch.get_xlabel() == "epoch" and by_time.get_xlabel() == "training time (s)"
    assert by_epoch.get_yscale() == by_time.get_yscale() == "log"
    lines = {line.get_label(): line for line in by_epoch.get_lines()}
    assert set(lines) == {"SGD-m", "Adam"}
    assert list(lines["SGD-m"].get_ydata()) == [100, 75, 55]  # medians over seeds
    assert list(lines["Adam"].get_ydata()) == [100, 50, 35]  # diverged run left out
    assert lines["Adam"].get_color() == colour("adam")
    time_lines = {line.get_label(): line for line in by_time.get_lines()}
    assert list(time_lines["SGD-m"].get_xdata()) == [0, 2, 4]  # median seconds per epoch


def test_command_line(runs: Path, tmp_path: Path, capsys) -> None:
    figure = tmp_path / "out" / "loss.png"
    main([str(runs), "--figure", str(figure)])
    output = capsys.readouterr().out
    assert "| SGD-m" in output and "| Adam" in output and "step time / SGD-m" in output
    assert figure.is_file() and figure.stat().st_size > 10_000
