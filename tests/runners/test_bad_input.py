"""Bad input fails before training with a message a user understands, and leaves no run
directory claiming success. Each case is a real `python -m runners.train` process, but for
the checks of numbers, which call the runner's build in-process."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runners.build import UserInputError, build_run
from tests.conftest import QUICK, compose_config, read_summary, run_dirs, run_train


def assert_nothing_claims_success(runs_dir: Path) -> None:
    for run_dir in run_dirs(runs_dir):
        assert read_summary(run_dir)["status"] == "failed"
        metrics = run_dir / "metrics.jsonl"
        assert not metrics.exists() or metrics.read_text() == ""
    assert not list(Path(runs_dir).rglob("checkpoint.pt"))


@pytest.mark.parametrize(
    ("override", "choices"),
    [
        ("optimizer=sdg", ["sgd", "adam"]),
        ("model=mlpp", ["mlp", "mnist_ae"]),
        ("dataset=fmnist", ["fashion_mnist", "mnist", "synthetic"]),
    ],
)
def test_unknown_name_lists_the_choices(tmp_path: Path, override: str, choices: list[str]) -> None:
    result = run_train(*QUICK, override, runs_dir=tmp_path / "runs")
    assert result.returncode != 0
    group, name = override.split("=")
    assert f"Could not find '{group}/{name}'" in result.stderr
    assert f"Available options in '{group}'" in result.stderr
    for choice in choices:
        assert f"\t{choice}\n" in result.stderr
    assert not (tmp_path / "runs").exists()  # composition failed before any directory


def test_negative_learning_rate(tmp_path: Path) -> None:
    result = run_train(*QUICK, "optimizer.lr=-0.1", runs_dir=tmp_path / "runs")
    assert result.returncode == 2
    assert "optimizer torch.optim.SGD: Invalid learning rate: -0.1" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert_nothing_claims_success(tmp_path / "runs")
    (run_dir,) = run_dirs(tmp_path / "runs")
    assert "Invalid learning rate" in read_summary(run_dir)["error"]


def test_misspelt_key(tmp_path: Path) -> None:
    result = run_train(*QUICK, "trainer.max_epoch=3", runs_dir=tmp_path / "runs")
    assert result.returncode != 0
    assert "Key 'max_epoch' not in 'TrainerConfig'" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_unknown_precision_lists_the_choices(tmp_path: Path) -> None:
    result = run_train(*QUICK, "trainer.precision=fp16", runs_dir=tmp_path / "runs")
    assert result.returncode != 0
    assert "Invalid value 'fp16', expected one of [float32, bfloat16]" in result.stderr
    assert "full_key: trainer.precision" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "runs").exists()


def test_misspelt_optimizer_argument_added_with_plus(tmp_path: Path) -> None:
    result = run_train(*QUICK, "+optimizer.momentun=0.5", runs_dir=tmp_path / "runs")
    assert result.returncode == 2
    assert "optimizer.momentun is not an argument of torch.optim.SGD" in result.stdout
    assert "momentum" in result.stdout  # the valid arguments are listed
    assert_nothing_claims_success(tmp_path / "runs")


def test_missing_data_offline(tmp_path: Path) -> None:
    empty = tmp_path / "no-data"
    result = run_train(
        *QUICK,
        "dataset=mnist",
        "dataset.download=false",
        f"paths.data_dir={empty}",
        runs_dir=tmp_path / "runs",
    )
    assert result.returncode == 2
    assert f"MNIST is not in {empty.resolve()}/MNIST/raw" in result.stdout
    assert "train-images-idx3-ubyte.gz" in result.stdout  # what to fetch
    assert "Traceback" not in result.stdout + result.stderr
    assert_nothing_claims_success(tmp_path / "runs")


def test_autoencoder_on_data_without_a_reconstruction_likelihood(tmp_path: Path) -> None:
    result = run_train(
        *QUICK,
        "model=mnist_ae",
        "dataset.reconstruction_likelihood=null",
        runs_dir=tmp_path / "runs",
    )
    assert result.returncode == 2
    assert "model=mnist_ae is an autoencoder but dataset=synthetic" in result.stdout
    assert_nothing_claims_success(tmp_path / "runs")


def test_a_budget_is_required(tmp_path: Path) -> None:
    result = run_train(
        *QUICK, "trainer.max_epochs=null", "trainer.max_time_s=null", runs_dir=tmp_path / "runs"
    )
    assert result.returncode == 2
    assert "set a budget" in result.stdout
    assert_nothing_claims_success(tmp_path / "runs")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("optimizer.lr=nan",), "optimizer.lr must be a finite number, got nan"),
        (("optimizer=kfac", "optimizer.damping=inf"), "optimizer.damping must be a finite"),
        (("trainer.max_time_s=inf",), "trainer.max_time_s must be finite, got inf"),
        (("trainer.lr_decay_factor=nan",), "trainer.lr_decay_factor must be positive, got nan"),
    ],
)
def test_non_finite_numbers_are_refused_before_training(
    overrides: tuple[str, ...], message: str
) -> None:
    """nan passes a constructor's `lr < 0` check and inf most range checks: refused here."""
    cfg = compose_config(*QUICK, *overrides)
    with pytest.raises(UserInputError, match=re.escape(message)):
        build_run(cfg, "mlp", "synthetic")
