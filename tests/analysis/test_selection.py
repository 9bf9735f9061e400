"""Best setting per (problem, method) by the papers' rules, with the grid and the rule
shown; checked on runs with known best values (tests/analysis/sweeps.py)."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import median

import pandas as pd
import pytest

from analysis.load import load
from analysis.selection import (
    HIGHEST_TEST_ACCURACY,
    LOWEST_TRAINING_LOSS,
    select,
    selection_markdown,
)
from tests.analysis.run_records import write_run
from tests.analysis.sweeps import AE, CHOSEN_LR, CNN, RUNS, write_sweep


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return load(write_sweep(tmp_path_factory.mktemp("sweep"))).runs


def expected_score(problem: str, method: str, lr: float) -> float:
    members = [r for r in RUNS if (r.problem, r.method, r.lr) == (problem, method, lr)]
    if problem == CNN:
        return median(max(r.accuracies) for r in members)
    values = [math.inf if r.status == "diverged" else min(r.losses) for r in members]
    return median(values)


def test_rules_by_problem_kind(runs: pd.DataFrame) -> None:
    selection = select(runs)
    assert selection.rules == {AE: LOWEST_TRAINING_LOSS, CNN: HIGHEST_TEST_ACCURACY}


def test_every_setting_scored_and_the_best_chosen(runs: pd.DataFrame) -> None:
    selection = select(runs)
    settings = selection.settings
    assert len(settings) == len({(r.problem, r.method, r.lr) for r in RUNS}) == 9
    lrs = runs.groupby("group")["config.optimizer.lr"].first()
    for row in settings.itertuples():
        lr = lrs[row.group]
        assert row.score == pytest.approx(expected_score(row.problem, row.method, lr))
        assert row.chosen == (CHOSEN_LR[(row.problem, row.method)] == lr)
        assert row.setting == f"optimizer.lr={lr}"
    chosen_lrs = {key: lrs[group] for key, group in selection.best_groups().items()}
    assert chosen_lrs == CHOSEN_LR


def test_a_diverged_seed_makes_the_setting_lose(runs: pd.DataFrame) -> None:
    """KFAC lr 3e-3 has the lowest loss of any KFAC seed (39) but diverged on the other."""
    settings = select(runs).settings.set_index(["problem", "method", "setting"])
    row = settings.loc[(AE, "kfac", "optimizer.lr=0.003")]
    assert row["score"] == math.inf and (row["completed"], row["diverged"]) == (1, 1)
    assert not row["chosen"]
    assert settings.loc[(AE, "kfac", "optimizer.lr=0.001"), "chosen"]


def test_classifier_chosen_by_test_accuracy_not_training_loss(runs: pd.DataFrame) -> None:
    settings = select(runs).settings.set_index(["problem", "method", "setting"])
    assert settings.loc[(CNN, "sgd", "optimizer.lr=0.1"), "chosen"]  # accuracy 0.91
    assert not settings.loc[(CNN, "sgd", "optimizer.lr=0.3"), "chosen"]  # loss 0.3 but 0.89


def test_running_seeds_left_out_and_no_choice_without_a_finished_setting(tmp_path: Path) -> None:
    write_run(tmp_path, "r0", "sgd", 0, [10, 5], 1.0, lr=0.1)
    write_run(tmp_path, "r1", "sgd", 1, [10, 1], 1.0, lr=0.1, status="running")
    write_run(tmp_path, "k0", "kfac", 0, [10, math.nan], 1.0, lr=0.1, status="diverged")
    write_run(tmp_path, "k1", "kfac", 0, [10, 2], 1.0, lr=0.3, status="running")
    selection = select(load(tmp_path).runs)
    settings = selection.settings.set_index("method")
    assert settings.loc["sgd", "score"] == 5  # the running seed's 1 is not final
    assert (settings.loc["sgd", "completed"], settings.loc["sgd", "running"]) == (1, 1)
    assert selection.best_groups().keys() == {("demo", "sgd")}  # KFAC: nothing finished
    assert not settings.loc["kfac", "chosen"].any()


def test_markdown_shows_rule_grid_and_scores(runs: pd.DataFrame) -> None:
    text = selection_markdown(select(runs))
    assert f"### {AE}" in text and f"### {CNN}" in text
    assert "Rule: **lowest training loss" in text and "Rule: **highest test accuracy" in text
    assert "- SGD-m: `optimizer.lr` ∈ {0.1, 0.3}" in text
    assert "- TNT: one setting (no grid)" in text
    assert "- KFAC: `optimizer.lr` ∈ {0.001, 0.003}" in text
    chosen_rows = [line for line in text.splitlines() if "**best**" in line]
    assert len(chosen_rows) == 6
    assert any("optimizer.lr=0.3" in line and "42.5" in line for line in chosen_rows)


def test_setting_texts_write_integers_as_the_config_does(tmp_path: Path) -> None:
    # SGD-m's runs have no trainer.max_epochs, so pandas holds Adam's 1 and 2 as 1.0 and 2.0
    write_run(tmp_path, "s0", "sgd", 0, [100, 60], 1.0)
    write_run(tmp_path, "a0", "adam", 0, [100, 40], 1.0, trainer_config={"max_epochs": 2})
    write_run(tmp_path, "a1", "adam", 0, [100, 50], 1.0, trainer_config={"max_epochs": 1})
    selection = select(load(tmp_path).runs)
    adam = selection.settings[selection.settings["method"] == "adam"]
    assert sorted(adam["setting"]) == [
        "optimizer.lr=0.1, trainer.max_epochs=1",
        "optimizer.lr=0.1, trainer.max_epochs=2",
    ]
    assert "- Adam: `trainer.max_epochs` ∈ {1, 2}" in selection_markdown(selection)
