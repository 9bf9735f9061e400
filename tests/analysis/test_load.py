"""Run directories -> the tidy sweep: one row per run (every run, whatever its status) and
one row per (run, logged step), with the flattened config, problem and method."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from analysis.load import load
from analysis.sweep import SourceError
from tests.analysis.run_records import machine_load_section, write_failed_run, write_run


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    write_run(root, "s0", "sgd", 0, [100, 80, 60], seconds_per_epoch=1.0)
    write_run(root, "s1", "sgd", 1, [100, 70, 50], seconds_per_epoch=3.0, status="running")
    write_run(root, "a0", "adam", 0, [100, 50, math.nan], 2.0, status="diverged")
    write_run(root, "t0", "tnt", 0, [100, 40, 30], 2.0, optimizer_config={"fisher": "sampled"})
    write_run(root, "e0", "tnt", 0, [100, 45, 35], 2.0, optimizer_config={"fisher": "empirical"})
    write_run(
        root,
        "c0",
        "sgd",
        0,
        [2.3, 1.0],
        5.0,
        experiment="tnt_cifar10_resnet32",
        accuracies=[0.1, 0.6],
        model="resnet32",
        dataset="cifar10",
    )
    write_failed_run(root, "f0", "kfac")
    return root


def test_one_row_per_run_every_status_kept(runs: Path) -> None:
    sweep = load(runs)
    table = sweep.runs.set_index("run_id")
    assert sorted(table.index) == ["a0", "c0", "e0", "f0", "s0", "s1", "t0"]
    assert table.loc["s1", "status"] == "running"  # incomplete: kept and marked
    assert table.loc["a0", "status"] == "diverged" and table.loc["a0", "diverged_at_step"] == 20
    assert table.loc["f0", "status"] == "failed"  # logged nothing, still a run
    assert table.loc["f0", "error"] == "Invalid damping value: -1.0"
    assert table.loc["s1", "config.optimizer.lr"] == 0.1
    assert table.loc["s1", "config.trainer.lr_decay_epochs"] == "[40, 80]"  # lists as text
    assert table.loc["s0", "best.train/full_loss"] == 60
    assert table.loc["s0", "time.per_step_s"] == pytest.approx(0.1)


def test_problem_and_method_columns(runs: Path) -> None:
    table = load(runs).runs.set_index("run_id")
    assert table.loc["t0", "method"] == "tnt" and table.loc["e0", "method"] == "tnt_ef"
    assert table.loc["s0", "method"] == "sgd"
    assert table.loc["s0", "problem"] == "demo"
    assert table.loc["c0", "problem"] == "tnt_cifar10_resnet32"


def test_problem_splits_an_experiment_with_several_models(tmp_path: Path) -> None:
    write_run(tmp_path, "m", "sgd", 0, [3, 2], 1.0, experiment="default", model="mlp")
    write_run(tmp_path, "a", "sgd", 0, [3, 2], 1.0, experiment="default", model="mnist_ae")
    problems = load(tmp_path).runs.set_index("run_id")["problem"]
    assert problems["m"] == "default[model=mlp]"
    assert problems["a"] == "default[model=mnist_ae]"
    write_failed_run(tmp_path, "f", "kfac", experiment="default", model=None, dataset=None)
    problems = load(tmp_path).runs.set_index("run_id")["problem"]
    assert problems["f"] == "default"  # does not say what it trained: kept, not split


def test_metrics_one_row_per_run_and_step(runs: Path) -> None:
    metrics = load(runs).metrics
    s0 = metrics[metrics["run_id"] == "s0"].set_index("step")
    # the step record and the evaluation record of a step are one row (as in W&B)
    assert list(s0.index) == [0, 10, 20]
    assert s0.loc[10, "train/loss"] == pytest.approx(88.0)  # from the step record
    assert s0.loc[10, "train/full_loss"] == 80  # from the evaluation record
    assert s0.loc[20, "time/train_s"] == 2.0
    assert set(s0["status"]) == {"completed"} and set(s0["config.seed"]) == {0}
    assert set(metrics["run_id"]) == {"a0", "c0", "e0", "s0", "s1", "t0"}  # f0 logged nothing


def test_non_finite_values_and_diverged_records_kept(runs: Path) -> None:
    metrics = load(runs).metrics
    a0 = metrics[metrics["run_id"] == "a0"].set_index("step")
    assert list(a0.index) == [0, 10, 20]
    assert math.isnan(a0.loc[20, "train/loss"])  # JSON NaN read back as NaN
    assert math.isnan(a0.loc[20, "train/full_loss"])  # no evaluation after divergence
    assert set(a0["status"]) == {"diverged"}


def test_test_error_from_accuracy(runs: Path) -> None:
    metrics = load(runs).metrics
    c0 = metrics[metrics["run_id"] == "c0"].set_index("step")
    assert list(c0["test/error"]) == pytest.approx([0.9, 0.4])
    assert metrics.loc[metrics["run_id"] == "s0", "test/error"].isna().all()


def test_torn_last_line_of_a_killed_run_is_skipped(runs: Path) -> None:
    path = runs / "demo" / "s1" / "metrics.jsonl"
    path.write_text(path.read_text() + '{"step": 30, "epoch": 3.0, "train/lo')
    metrics = load(runs).metrics
    assert list(metrics.loc[metrics["run_id"] == "s1", "step"]) == [0, 10, 20]


def test_unknown_folder_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="wandb:<entity>/<project>"):
        load(tmp_path / "nowhere")


def test_smoke_and_full_runs_of_one_experiment_are_different_problems(tmp_path: Path) -> None:
    """`scale=smoke` trains the experiment on a subset: its runs never compete with full
    ones, whose curves it would otherwise win on a 64-example training set."""
    full, smoke = {"source": "mnist", "train_size": None}, {"source": "mnist", "train_size": 64}
    for seed in (0, 1):
        write_run(
            tmp_path,
            f"f{seed}",
            "sgd",
            seed,
            [100, 50],
            1.0,
            lr=0.1,
            experiment="tnt_mnist_ae",
            dataset_config=full,
        )
        write_run(
            tmp_path,
            f"s{seed}",
            "sgd",
            seed,
            [100, 5],
            1.0,
            lr=1.0,
            experiment="tnt_mnist_ae",
            dataset_config=smoke,
        )
    write_failed_run(tmp_path, "x", "sgd", experiment="tnt_mnist_ae")
    problems = load(tmp_path).runs.set_index("run_id")["problem"]
    assert problems["f0"] == problems["f1"] == "tnt_mnist_ae[dataset.train_size=null]"
    assert problems["s0"] == problems["s1"] == "tnt_mnist_ae[dataset.train_size=64]"
    assert problems["x"] == "tnt_mnist_ae"  # no config: it cannot say which one it was


def test_machine_load_columns_and_their_absence_in_older_runs(tmp_path: Path) -> None:
    load_section = machine_load_section(cpu_count=2, mean=2.4, peak=3.1)
    write_run(tmp_path, "new", "sgd", 0, [100, 80], 1.0, machine_load=load_section)
    write_run(tmp_path, "old", "sgd", 1, [100, 70], 1.0)  # written before the section existed
    table = load(tmp_path).runs.set_index("run_id")
    for key, value in load_section.items():
        assert table.loc["new", f"machine_load.{key}"] == value
    assert table.loc["old", ["machine_load.cpu_count", "machine_load.load_1min_mean"]].isna().all()
    only_old = tmp_path / "old_only"
    write_run(only_old, "old", "sgd", 1, [100, 70], 1.0)
    assert not any(column.startswith("machine_load.") for column in load(only_old).runs)
