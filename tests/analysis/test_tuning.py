"""The analysis of tuned runs: trials never enter a comparison, every table states each
method's tuning budget and warns when one problem's methods had different ones, and
analysis.tuning's curves are contract.tuning's expected best of the trials' scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from analysis.budgets import NOT_TUNED, budget_warnings
from analysis.compare import comparison_markdown, comparison_tables
from analysis.figures.__main__ import main as figures_main
from analysis.load import load
from analysis.results import Results
from analysis.tuning import main as tuning_main
from analysis.tuning import read_tuning_runs, studies, study_table
from contract.tuning import expected_best
from tests.analysis.run_records import write_run


def with_tuning(run_dir: Path, tuning: dict, valid: list[float] | None = None) -> Path:
    """Mark a written run as runners.tune's, with valid/loss values at its evaluations."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["tuning"] = tuning
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    if valid is not None:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        evaluations = [r for r in records if "train/full_loss" in r]
        for record, value in zip(evaluations, valid, strict=True):
            record["valid/loss"] = value
            if tuning["role"] == "trial":
                record.pop("test/loss", None)  # trials never evaluate on the test split
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run_dir


def tuned_sweep(root: Path, adam_trials: int = 3) -> None:
    for method, trials, base in (("sgd", 3, 300.0), ("adam", adam_trials, 250.0)):
        study = f"demo-{method}-qmc-0"
        for number in range(trials):
            lr = 10.0 ** -(number + 2)
            run = write_run(
                root, f"{method}t{number}", method, 0, [base + 10 * number] * 3, 1.0, lr=lr
            )
            with_tuning(
                run,
                {"study": study, "role": "trial", "trial": number},
                [base + 10 * number + 5, base + 10 * number, base + 10 * number + 1],
            )
        for seed in range(2):
            run = write_run(
                root, f"{method}f{seed}", method, seed, [base, base - 5, base - 8], 1.0, lr=0.01
            )
            with_tuning(
                run,
                {
                    "study": study,
                    "role": "final",
                    "trials": trials,
                    "sampler": "qmc",
                    "space": method,
                },
            )


def test_trials_never_enter_a_comparison_and_the_budget_is_in_the_table(tmp_path: Path):
    tuned_sweep(tmp_path)
    sweep = load(tmp_path)
    assert set(sweep.runs["run_id"]) == {"sgdf0", "sgdf1", "adamf0", "adamf1"}
    results = Results.of(sweep)
    (table,) = comparison_tables(results).values()
    assert list(table["tuning"]) == ["3 trials (qmc)", "3 trials (qmc)"]
    assert "different budgets" not in comparison_markdown(results)


def test_methods_tuned_with_different_budgets_are_warned_about(tmp_path: Path) -> None:
    tuned_sweep(tmp_path, adam_trials=5)
    write_run(tmp_path, "kfac0", "kfac", 0, [260.0, 240.0, 230.0], 2.0)  # the papers' settings
    results = Results.of(load(tmp_path))
    warning = budget_warnings(results.compared)["demo"]
    assert "SGD-m: 3 trials (qmc)" in warning and "Adam: 5 trials (qmc)" in warning
    assert f"KFAC: {NOT_TUNED}" in warning
    assert warning in comparison_markdown(results)


def test_the_tuning_table_and_curve_come_from_the_trials_scores(tmp_path: Path) -> None:
    tuned_sweep(tmp_path)
    found = studies(read_tuning_runs(tmp_path))
    sgd = next(study for study in found if study.method == "sgd")
    assert sgd.scores == [300.0, 310.0, 320.0]  # the lowest valid/loss of each trial
    assert sgd.curve() == pytest.approx(expected_best([300.0, 310.0, 320.0], 3, False))
    table = study_table(found, "demo")
    assert table.loc["SGD-m", "best valid/loss"] == 300.0
    assert table.loc["SGD-m", "best setting"] == "lr=0.01"
    assert table.loc["SGD-m", "E[best] after 1"] == pytest.approx(310.0)
    assert table.loc["SGD-m", "final seeds"] == 2
    figure = tmp_path / "tuning.png"
    assert tuning_main([str(tmp_path), "--figure", str(figure)]) == 0
    assert figure.stat().st_size > 10_000


def test_no_trials_is_one_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_run(tmp_path, "a", "sgd", 0, [3.0, 2.0], 1.0)
    assert tuning_main([str(tmp_path)]) == 1
    assert "no tuning trials" in capsys.readouterr().err


def test_the_figures_warn_about_unequal_budgets(tmp_path: Path, capsys: pytest.CaptureFixture):
    tuned_sweep(tmp_path, adam_trials=5)
    figures_main(["overview", "--runs", str(tmp_path), "--out", str(tmp_path / "figures")])
    assert "tuned with different budgets" in capsys.readouterr().err
