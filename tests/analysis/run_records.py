"""Write run directories with known curves, in the runner's record format, for analysis
tests (analysis reads files only, so these are exactly what it sees after real runs)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def write_run(
    root: Path,
    run_id: str,
    optimizer: str,
    seed: int,
    losses: list[float],
    seconds_per_epoch: float,
    steps_per_epoch: int = 10,
    status: str = "completed",
    lr: float = 0.1,
    experiment: str = "demo",
) -> Path:
    """A run whose evaluation at epoch e has train/full_loss losses[e] at e*seconds_per_epoch
    training seconds."""
    run_dir = root / experiment / run_id
    run_dir.mkdir(parents=True)
    records = []
    for epoch, loss in enumerate(losses):
        step = epoch * steps_per_epoch
        if epoch:
            records.append(
                {
                    "step": step,
                    "epoch": float(epoch),
                    "train/loss": loss * 1.1,
                    "time/train_s": epoch * seconds_per_epoch,
                }
            )
        records.append(
            {
                "step": step,
                "epoch": float(epoch),
                "train/full_loss": loss,
                "test/loss": loss + 1.0,
                "time/train_s": epoch * seconds_per_epoch,
            }
        )
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    steps = (len(losses) - 1) * steps_per_epoch
    summary = {
        "run_id": run_id,
        "group": f"g-{optimizer}",
        "experiment": experiment,
        "optimizer": optimizer,
        "model": "mnist_ae",
        "dataset": "fashion_mnist",
        "seed": seed,
        "status": status,
        "epochs": len(losses) - 1,
        "steps": steps,
        "steps_per_epoch": steps_per_epoch,
        "final": records[-1],
        "best": {"train/full_loss": min(losses), "test/loss": min(losses) + 1.0},
        "time": {
            "train_s": (len(losses) - 1) * seconds_per_epoch,
            "per_step_s": seconds_per_epoch / steps_per_epoch,
        },
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    config = {
        "seed": seed,
        "optimizer": {"_target_": f"x.{optimizer}", "lr": lr},
        "trainer": {"batch_size": 1000, "lr_decay_epochs": [40, 80]},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir
