"""The tables: time per step and per epoch relative to SGD-m, results with time to target,
performance profiles; markdown and CSV. Expectations derived from tests/analysis/sweeps.py."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import median

import pandas as pd
import pytest

from analysis.load import load
from analysis.results import Results
from analysis.tables import all_tables, cost_table, main, profile_table, results_table, write_table
from tests.analysis.run_records import write_run
from tests.analysis.sweeps import AE, CNN, chosen, write_sweep

STEPS_PER_EPOCH = 10


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sweep(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def results(sweep_dir: Path) -> Results:
    return Results.of(load(sweep_dir))


def step_seconds(problem: str, method: str) -> float:
    return median(r.seconds_per_epoch / STEPS_PER_EPOCH for r in chosen(problem, method))


def test_cost_table_ratios_to_sgd(results: Results) -> None:
    table = cost_table(results)
    assert list(table.index) == [
        (CNN, "SGD-m"),
        (CNN, "TNT"),
        (AE, "SGD-m"),
        (AE, "Adam on momentum"),
        (AE, "KFAC"),
        (AE, "TNT"),
    ]  # problems by name, methods in the papers' order
    methods = ["sgd", "tnt", "sgd", "adam_on_momentum", "kfac", "tnt"]
    for (problem, name), method in zip(table.index, methods, strict=True):
        row = table.loc[(problem, name)]
        ratio = step_seconds(problem, method) / step_seconds(problem, "sgd")
        assert row["ms / step"] == pytest.approx(1000 * step_seconds(problem, method))
        assert row["s / epoch"] == pytest.approx(STEPS_PER_EPOCH * step_seconds(problem, method))
        assert row["step time / SGD-m"] == pytest.approx(ratio)
        assert row["epoch time / SGD-m"] == pytest.approx(ratio)
    assert table.loc[(AE, "TNT"), "step time / SGD-m"] == pytest.approx(2.0)
    assert table.loc[(AE, "SGD-m"), "ms / step"] == pytest.approx(150.0)  # 100 and 200 ms
    assert table.loc[(AE, "TNT"), "optimizer state (MiB)"] == 2.0


def test_results_table(results: Results) -> None:
    table = results_table(results)
    kfac = table.loc[(AE, "KFAC")]
    assert kfac["setting"] == "optimizer.lr=0.001"
    assert (kfac["seeds"], kfac["completed"], kfac["diverged"]) == (2, 2, 0)
    assert kfac["best train loss"] == 45  # median of 44 and 46
    assert kfac["epochs to target"] == math.inf and kfac["time to target (s)"] == math.inf
    assert kfac["target"] == 45
    tnt = table.loc[(AE, "TNT")]
    assert (tnt["best train loss"], tnt["epochs to target"], tnt["time to target (s)"]) == (
        39,
        2.0,
        6.0,
    )
    assert table.loc[(CNN, "TNT"), "best test accuracy (%)"] == pytest.approx(93.0)
    assert table.loc[(CNN, "SGD-m"), "best test accuracy (%)"] == pytest.approx(91.0)
    assert math.isnan(table.loc[(AE, "SGD-m"), "best test accuracy (%)"])


def test_a_method_without_a_finished_setting_is_still_a_row(tmp_path: Path) -> None:
    write_run(tmp_path, "s0", "sgd", 0, [10, 6, 2], 1.0)
    write_run(tmp_path, "k0", "kfac", 0, [10, 8, math.nan], 4.0, status="diverged")
    results = Results.of(load(tmp_path))
    table = results_table(results)
    kfac = table.loc[("demo", "KFAC")]
    assert kfac["setting"] == "none finished" and kfac["diverged"] == 1
    assert kfac["time to target (s)"] == math.inf
    assert math.isnan(kfac["best train loss"])  # no completed seed
    # its steps still cost what they cost: 4 s per 10 steps vs 1 s
    assert cost_table(results).loc[("demo", "KFAC"), "step time / SGD-m"] == pytest.approx(4.0)


def test_profile_tables_from_the_times_to_target(results: Results) -> None:
    profile = profile_table(results, "time_to_target")
    assert list(profile.columns) == ["SGD-m", "Adam on momentum", "KFAC", "TNT"]
    # AE: sgd 4.5, adam 4.5, kfac inf, tnt 6; CNN: sgd 20, tnt 60 (adam, kfac not run)
    assert profile.loc[1.0].tolist() == [1.0, 0.5, 0.0, 0.0]
    assert profile.loc[1.5].tolist() == [1.0, 0.5, 0.0, 0.5]
    assert profile.loc[3.0].tolist() == [1.0, 0.5, 0.0, 1.0]
    epochs = profile_table(results, "epochs_to_target")
    # AE: sgd 3, adam 3, tnt 2 -> tnt fastest; CNN: both 2 epochs -> tie
    assert epochs.loc[1.0].tolist() == [0.5, 0.0, 0.0, 1.0]
    assert epochs.loc[1.5].tolist() == [1.0, 0.5, 0.0, 1.0]


def markdown_rows(text: str) -> list[dict[str, str]]:
    """A pipe table -> one {header: cell} per row."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    header, rows = cells[0], cells[2:]  # cells[1] is the alignment row
    return [dict(zip(header, row, strict=True)) for row in rows]


def test_markdown_and_csv_files(results: Results, tmp_path: Path) -> None:
    table = results_table(results)
    markdown, csv = write_table(table, tmp_path / "tables", "results")
    rows = {(row["problem"], row["method"]): row for row in markdown_rows(markdown.read_text())}
    assert len(rows) == len(table)
    kfac = rows[(AE, "KFAC")]
    assert kfac["setting"] == "optimizer.lr=0.001" and kfac["time to target (s)"] == "inf"
    assert kfac["best test accuracy (%)"] == ""  # an autoencoder: not computed, not nan
    assert rows[(CNN, "TNT")]["best test accuracy (%)"] == "93"
    back = pd.read_csv(csv, index_col=[0, 1])
    assert back.loc[(AE, "KFAC"), "time to target (s)"] == math.inf
    assert back.loc[(AE, "TNT"), "best train loss"] == 39
    assert list(back.columns) == list(table.columns)


def test_command_line_prints_and_writes_every_table(
    sweep_dir: Path, tmp_path: Path, capsys
) -> None:
    main(["--runs", str(sweep_dir), "--out", str(tmp_path / "t"), "--target", f"{AE}=50"])
    output = capsys.readouterr().out
    for name in all_tables(Results.of(load(sweep_dir))):
        assert f"## {name}" in output
        assert (tmp_path / "t" / f"{name}.csv").is_file()
        assert (tmp_path / "t" / f"{name}.md").is_file()
    results = pd.read_csv(tmp_path / "t" / "results.csv", index_col=[0, 1])
    assert results.loc[(AE, "KFAC"), "target"] == 50  # the given target
    # KFAC's seeds reach 50 at epochs 2 (50) and 3 (46)
    assert results.loc[(AE, "KFAC"), "epochs to target"] == median([2.0, 3.0])


def test_results_table_final_and_best_training_loss(tmp_path: Path) -> None:
    # the loss rose after its best evaluation: the final and the best loss differ
    write_run(tmp_path, "s0", "sgd", 0, [100, 40, 50], 1.0)
    write_run(tmp_path, "s1", "sgd", 1, [100, 30, 70], 1.0)
    write_run(tmp_path, "s2", "sgd", 2, [100, 1.0, math.nan], 1.0, status="diverged")
    row = results_table(Results.of(load(tmp_path))).loc[("demo", "SGD-m")]
    assert row["final train loss"] == 60  # median of 50 and 70; the diverged seed left out
    assert row["best train loss"] == 35  # median of 40 and 30
