"""Warm start: outside the training clock, timed on its own, and without a trace on the model,
so a method with a warm start trains from exactly the model every other method gets."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import read_metrics, read_summary, run_dirs, run_train
from tests.runners.processes import comparable
from tests.runners.warm_start_optimizers import WARM_START_SECONDS

# ResNet-32 has BatchNorm, whose running statistics a training-mode forward pass moves.
BATCHNORM_PROBLEM = (
    "model=resnet32",
    "dataset=synthetic_cifar10",
    "dataset.train_size=64",
    "dataset.test_size=32",
    "trainer.batch_size=16",
    "trainer.max_epochs=1",
    "trainer.log_every_steps=1",
    "logger=none",
)


def test_warm_start_is_timed_apart_and_leaves_no_trace(tmp_path: Path) -> None:
    plain = run_train(*BATCHNORM_PROBLEM, runs_dir=tmp_path / "plain")
    assert plain.returncode == 0, plain.stderr
    warm = run_train(
        *BATCHNORM_PROBLEM,
        "optimizer._target_=tests.runners.warm_start_optimizers.SGDWithWarmStart",
        runs_dir=tmp_path / "warm",
    )
    assert warm.returncode == 0, warm.stderr
    (plain_dir,), (warm_dir,) = run_dirs(tmp_path / "plain"), run_dirs(tmp_path / "warm")
    summary = read_summary(warm_dir)
    assert summary["time"]["warm_start_s"] >= WARM_START_SECONDS
    plain_summary = read_summary(plain_dir)
    assert plain_summary["time"]["warm_start_s"] == 0
    # on the training clock it would add WARM_START_SECONDS to the 4 steps' time
    assert summary["time"]["train_s"] < plain_summary["time"]["train_s"] + WARM_START_SECONDS / 2
    # same weights, same BatchNorm statistics, same batches: the same numbers throughout
    assert comparable(read_metrics(warm_dir)) == comparable(read_metrics(plain_dir))


def test_a_warm_start_that_changes_weights_is_an_error(tmp_path: Path) -> None:
    result = run_train(
        *BATCHNORM_PROBLEM,
        "optimizer._target_=tests.runners.warm_start_optimizers.WeightChangingWarmStart",
        runs_dir=tmp_path / "runs",
    )
    assert result.returncode == 1
    # one line on the console, the traceback in the run directory
    assert "warm_start changed the weights of" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    (run_dir,) = run_dirs(tmp_path / "runs")
    summary = read_summary(run_dir)
    assert summary["status"] == "failed"
    assert "warm_start changed the weights of" in summary["error"]
    assert "Traceback" in (run_dir / "error.txt").read_text()
