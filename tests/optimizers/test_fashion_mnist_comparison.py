"""The issue's real-data check: on the Fashion-MNIST autoencoder (the demo problem: MNIST
autoencoder architecture, batch 1000, each optimizer with its conf/tuned/demo settings), KFAC,
Shampoo, TNT, K-BFGS and TENGraD reach a lower full training loss than SGD-m after every one
of 10 epochs.

Slow (tens of minutes on a 2-core CPU); `make test-slow` runs it after `make data`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import read_metrics, read_summary, run_dirs, run_train

EPOCHS = 10
SECOND_ORDER = ("kfac", "shampoo", "tnt", "kbfgs", "tengrad")


def epoch_losses(run_dir: Path) -> dict[int, float]:
    return {
        round(m["epoch"]): m["train/full_loss"]
        for m in read_metrics(run_dir)
        if "train/full_loss" in m
    }


@pytest.mark.slow
def test_second_order_methods_beat_sgd_momentum_at_every_epoch(tmp_path: Path) -> None:
    result = run_train(
        "experiment=demo",
        f"optimizer=sgd,{','.join(SECOND_ORDER)}",
        f"trainer.max_epochs={EPOCHS}",
        "logger=none",
        runs_dir=tmp_path / "runs",
        multirun=True,
        timeout=4 * 3600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    losses = {}
    for run_dir in run_dirs(tmp_path / "runs"):
        summary = read_summary(run_dir)
        assert summary["status"] == "completed", summary
        losses[summary["optimizer"]] = epoch_losses(run_dir)
    assert set(losses) == {"sgd", *SECOND_ORDER}
    for name in SECOND_ORDER:
        for epoch in range(1, EPOCHS + 1):
            assert losses[name][epoch] < losses["sgd"][epoch], (name, epoch, losses)
