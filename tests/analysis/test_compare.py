"""`python -m analysis.compare` (make demo): the same runs, settings and numbers as the report,
what it left out, the warning about overloaded machines, and the loss figure of the compared
runs, on run directories with known curves (loading itself: test_load.py)."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import median

import pandas as pd
import pytest

from analysis import report
from analysis.compare import loss_figure, main
from analysis.load import load
from analysis.results import Results
from tests.analysis.run_records import write_run
from tests.analysis.sweeps import write_loaded_sweep

CNN = "tnt_cifar10_resnet32"
# final training losses of the chosen settings' completed seeds, and of the settings the
# selection rule passes over (a blind median per optimizer would mix them in)
SGD_CHOSEN, SGD_OTHER = [60, 50], [80, 75]  # lr 0.1 (best 55) beats lr 0.01 (best 77.5)
ADAM_CHOSEN, ADAM_OTHER = [40, 30], [60, 62]  # 2 epochs (best 35) beat 1 epoch (best 61)


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Two problems. demo: SGD-m with two learning rates; Adam with two budgets
    (trainer.max_epochs), a diverged and an interrupted seed in the chosen one; TNT with a
    running seed. The CNN: SGD-m with two learning rates, classified by test accuracy."""
    root = tmp_path / "runs"
    write_run(root, "s0", "sgd", 0, [100, 80, SGD_CHOSEN[0]], 1.0)
    write_run(root, "s1", "sgd", 1, [100, 70, SGD_CHOSEN[1]], 3.0)
    write_run(root, "s2", "sgd", 0, [100, 90, SGD_OTHER[0]], 1.0, lr=0.01)
    write_run(root, "s3", "sgd", 1, [100, 85, SGD_OTHER[1]], 1.0, lr=0.01)
    two, one = {"max_epochs": 2}, {"max_epochs": 1}
    write_run(root, "a0", "adam", 0, [100, 50, ADAM_CHOSEN[0]], 2.0, trainer_config=two)
    write_run(root, "a1", "adam", 1, [100, 50, ADAM_CHOSEN[1]], 4.0, trainer_config=two)
    write_run(
        root, "a2", "adam", 2, [100, 1e9, math.nan], 9.0, status="diverged", trainer_config=two
    )
    write_run(root, "a3", "adam", 3, [100, 45], 2.0, status="interrupted", trainer_config=two)
    write_run(root, "a4", "adam", 0, [100, ADAM_OTHER[0]], 1.0, trainer_config=one)
    write_run(root, "a5", "adam", 1, [100, ADAM_OTHER[1]], 1.0, trainer_config=one)
    write_run(root, "t0", "tnt", 0, [100, 40, 20], 6.0, lr=1e-4)
    write_run(root, "t1", "tnt", 1, [100, 42], 6.0, lr=1e-4, status="running")
    cnn = {"experiment": CNN, "model": "resnet32", "dataset": "cifar10"}
    write_run(root, "c0", "sgd", 0, [2.3, 1.0, 0.5], 10.0, accuracies=[0.1, 0.8, 0.9], **cnn)
    write_run(root, "c1", "sgd", 1, [2.3, 1.1, 0.6], 10.0, accuracies=[0.1, 0.8, 0.92], **cnn)
    write_run(
        root, "c2", "sgd", 0, [2.3, 0.8, 0.3], 10.0, lr=0.3, accuracies=[0.1, 0.8, 0.8], **cnn
    )
    return root


def markdown_tables(text: str) -> dict[str, pd.DataFrame]:
    """The markdown table under each '## <problem>' heading of the printed comparison, as
    text cells indexed by method."""
    tables, problem, rows = {}, None, []
    for line in [*text.splitlines(), ""]:
        if line.startswith("## "):
            problem, rows = line.removeprefix("## "), []
        elif line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows and problem is not None:
            header, _, *body = rows
            tables[problem] = pd.DataFrame(body, columns=header).set_index("method")
            problem, rows = None, []
    return tables


def compare_output(runs: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main([str(runs), *args]) == 0
    return capsys.readouterr().out


def test_the_table_shows_the_reports_numbers_cell_by_cell(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tables = markdown_tables(compare_output(runs, capsys))
    out = tmp_path / "report"
    assert report.main(["--runs", str(runs), "--out", str(out), "--format", "png"]) == 0
    reported = pd.read_csv(out / "tables" / "results.csv", index_col=[0, 1]).join(
        pd.read_csv(out / "tables" / "cost.csv", index_col=[0, 1])
    )
    shown = [(problem, method) for problem, table in tables.items() for method in table.index]
    assert sorted(shown) == sorted(reported.index)  # every problem and method, once
    assert {"setting", "tuning", "final train loss", "best train loss", "ms / step"} <= set(
        tables["demo"]
    )
    assert "best test accuracy (%)" in tables[CNN]
    for problem, table in tables.items():
        for method, row in table.iterrows():
            for column, cell in row.items():
                expected = reported.loc[(problem, method), column]
                if column in ("setting", "tuning"):
                    assert cell == expected, (problem, method, column)
                elif cell == "":
                    assert math.isnan(expected), (problem, method, column)
                else:  # printed with 4 significant digits
                    assert float(cell) == pytest.approx(expected, rel=1e-3), (problem, column)
    # the numbers are the chosen settings' (a median over all of an optimizer's runs would
    # mix in the other learning rate and the other budget)
    demo = tables["demo"]
    assert float(demo.loc["SGD-m", "final train loss"]) == median(SGD_CHOSEN)
    assert median(SGD_CHOSEN + SGD_OTHER) != median(SGD_CHOSEN)
    assert float(demo.loc["Adam", "final train loss"]) == median(ADAM_CHOSEN)
    assert median(ADAM_CHOSEN + ADAM_OTHER) != median(ADAM_CHOSEN)
    assert demo.loc["Adam", "setting"] == "optimizer.lr=0.1, trainer.max_epochs=2"
    assert (demo.loc["Adam", "seeds"], demo.loc["Adam", "completed"]) == ("4", "2")
    assert float(tables[CNN].loc["SGD-m", "best test accuracy (%)"]) == pytest.approx(91.0)


def test_it_says_what_it_left_out(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = compare_output(runs, capsys)
    demo, cnn = output.split(f"## {CNN}")
    assert (
        "Not shown: SGD-m: 2 runs of 1 other setting; Adam: 2 runs of 1 other setting "
        '(their scores: `python -m analysis.report`, "Best settings").'
    ) in demo
    assert (
        "Left out of the losses, unfinished: Adam seed 3 (interrupted), TNT seed 1 (running)."
        in demo
    )
    assert "Left out of the losses, ended badly: Adam seed 2 (diverged)." in demo
    assert "Not shown: SGD-m: 1 run of 1 other setting" in cnn
    assert "Left out of the losses" not in cnn
    assert "overloaded" not in output  # no run says its machine was


def test_the_figure_draws_the_compared_runs_only(runs: Path) -> None:
    drawn = loss_figure(Results.of(load(runs)))
    demo_by_epoch, demo_by_time, cnn_by_epoch, _ = drawn.figure.axes  # problems by name
    assert demo_by_epoch.get_xlabel() == "epoch" and demo_by_time.get_xlabel().startswith("train")
    assert demo_by_epoch.get_yscale() == "log"
    lines = {line.get_label(): list(line.get_ydata()) for line in demo_by_epoch.get_lines()}
    assert lines["SGD-m"] == [100, 75, median(SGD_CHOSEN)]  # lr 0.01 left out
    assert lines["Adam"] == [100, 50, median(ADAM_CHOSEN)]  # 1-epoch budget, diverged left out
    assert lines["TNT"] == [100, 40, 20]  # the running seed left out
    assert {line.get_label() for line in cnn_by_epoch.get_lines()} == {"SGD-m"}


def test_command_line_writes_the_figure(runs: Path, tmp_path: Path, capsys) -> None:
    figure = tmp_path / "out" / "loss.png"
    output = compare_output(runs, capsys, "--figure", str(figure))
    assert output.startswith("## demo\n") and f"## {CNN}" in output
    assert f"figure: {figure}" in output
    assert figure.read_bytes()[:4] == b"\x89PNG"


def test_a_missing_folder_is_a_message_not_a_traceback(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "nowhere")]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"no folder '{tmp_path / 'nowhere'}'") and "Traceback" not in error
    assert main([str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"no runs in {tmp_path}\n"


OVERLOADED = (
    "Warning: the machine was overloaded (mean load above its cores) during Adam seed 1 "
    "(load 3.1 on 2 cores): their times and time ratios are not trustworthy."
)


def test_overloaded_runs_are_named_under_their_problems_table(tmp_path: Path, capsys) -> None:
    output = compare_output(write_loaded_sweep(tmp_path / "busy", 3.1), capsys)
    assert output.count("Warning:") == 1 and OVERLOADED in output
    for mean in (2.0, None):  # at the cores is not above them; no section says nothing
        output = compare_output(write_loaded_sweep(tmp_path / f"calm{mean}", mean), capsys)
        assert "overloaded" not in output and "Warning" not in output
