"""Write run directories with known curves, in the runner's record format, for analysis
tests (analysis reads files only, so these are exactly what it sees after real runs)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from contract.records import MACHINE_LOAD


def write_run(
    root: Path,
    run_id: str,
    optimizer: str,
    seed: int,
    losses: Sequence[float],
    seconds_per_epoch: float,
    steps_per_epoch: int = 10,
    status: str = "completed",
    lr: float = 0.1,
    experiment: str = "demo",
    accuracies: Sequence[float] | None = None,
    times: Sequence[float] | None = None,
    optimizer_config: dict[str, Any] | None = None,
    model: str = "mnist_ae",
    dataset: str = "fashion_mnist",
    state_bytes: int = 0,
    dataset_config: dict[str, Any] | None = None,
    trainer_config: dict[str, Any] | None = None,
    machine_load: dict[str, Any] | None = None,
    ema: Sequence[float] | None = None,
    ema_mid_epoch: Sequence[float] | None = None,
    process_times: Sequence[float] | None = None,
    weight_sq_norms: Sequence[float] | None = None,
    device: str | None = None,
) -> Path:
    """A run whose evaluation at epoch e has train/full_loss losses[e] (and test/accuracy
    accuracies[e]) at times[e] (default e*seconds_per_epoch) training seconds and
    process_times[e] (default 1.5 times[e]) process seconds. A step record is logged at each
    epoch's last step, as the runner does (log_every_steps divides steps_per_epoch), with
    train/loss_ema ema[e] (default losses[e]); the evaluation of that step logs the same EMA
    (the runner's records of one step, merged on load). `ema_mid_epoch[e - 1]`, when given,
    is the EMA of a step record half-way through epoch e (e >= 1): not an epoch end.
    `weight_sq_norms[e]` is model/weight_sq_norm of evaluation e (none logged without it,
    as in runs before the metric existed); `device` writes environment.json with it. A NaN
    loss ends a diverged run there.
    `trainer_config` adds to the trainer's config (e.g. max_epochs: another budget is another
    setting). `machine_load` is summary.json's machine_load section (contract.records
    LOAD_KEYS); without it the summary has none, as those of runs before the section."""
    run_dir = root / experiment / run_id
    run_dir.mkdir(parents=True)
    times = (
        list(times) if times is not None else [e * seconds_per_epoch for e in range(len(losses))]
    )
    optimizer_settings = {"lr": lr, **(optimizer_config or {})}
    process = list(process_times) if process_times is not None else [1.5 * t for t in times]
    emas = list(ema) if ema is not None else list(losses)
    records: list[dict[str, Any]] = []
    evaluations: list[dict[str, Any]] = []
    for epoch, loss in enumerate(losses):
        step = epoch * steps_per_epoch
        position = {"step": step, "epoch": float(epoch)}
        if epoch and ema_mid_epoch is not None:
            half = step - steps_per_epoch // 2
            records.append(
                {
                    "step": half,
                    "epoch": half / steps_per_epoch,
                    "train/loss": ema_mid_epoch[epoch - 1],
                    "train/loss_ema": ema_mid_epoch[epoch - 1],
                    "time/train_s": (times[epoch - 1] + times[epoch]) / 2,
                    "lr": lr,
                }
            )
        if epoch:
            records.append(
                {
                    **position,
                    "train/loss": loss * 1.1,
                    "train/loss_ema": emas[epoch],
                    "time/train_s": times[epoch],
                    "lr": lr,
                }
            )
        if not math.isfinite(loss):
            break  # the runner stops at a non-finite training loss
        evaluation = {
            **position,
            "train/full_loss": loss,
            "test/loss": loss + 1.0,
            "time/train_s": times[epoch],
            "lr": lr,
            "time/process_s": process[epoch],
            "mem/optimizer_state_bytes": state_bytes,
            "mem/peak_bytes": 2**30,
        }
        if epoch:  # the runner has no EMA before the first step
            evaluation["train/loss_ema"] = emas[epoch]
        if weight_sq_norms is not None:
            evaluation["model/weight_sq_norm"] = weight_sq_norms[epoch]
        if accuracies is not None:
            evaluation["test/accuracy"] = accuracies[epoch]
            evaluation["train/accuracy"] = accuracies[epoch] + 0.05
        records.append(evaluation)
        evaluations.append(evaluation)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    steps = records[-1]["step"]
    finite = [loss for loss in losses if math.isfinite(loss)]
    best: dict[str, float] = {"train/full_loss": min(finite), "test/loss": min(finite) + 1.0}
    if accuracies is not None:
        best["test/accuracy"] = max(accuracies[: len(evaluations)])
    summary = {
        "run_id": run_id,
        # the setting: everything but the seed
        "group": f"{experiment}-{optimizer}-{json.dumps(optimizer_settings, sort_keys=True)}"
        + (f"-{json.dumps(dataset_config, sort_keys=True)}" if dataset_config else "")
        + (f"-{json.dumps(trainer_config, sort_keys=True)}" if trainer_config else ""),
        "experiment": experiment,
        "optimizer": optimizer,
        "model": model,
        "dataset": dataset,
        "seed": seed,
        "status": status,
        "epochs": steps // steps_per_epoch,
        "steps": steps,
        "steps_per_epoch": steps_per_epoch,
        "diverged_at_step": steps if status == "diverged" else None,
        "final": evaluations[-1],
        "best": best,
        "time": {
            "train_s": records[-1]["time/train_s"],
            "per_step_s": records[-1]["time/train_s"] / steps if steps else None,
        },
    }
    if machine_load is not None:
        summary[MACHINE_LOAD] = machine_load
    (run_dir / "summary.json").write_text(json.dumps(summary))
    if device is not None:
        (run_dir / "environment.json").write_text(json.dumps({"device": device}))
    config = {
        "seed": seed,
        "optimizer": {"_target_": f"x.{optimizer}", **optimizer_settings},
        "trainer": {"batch_size": 1000, "lr_decay_epochs": [40, 80], **(trainer_config or {})},
        "paths": {"runs_dir": str(root)},
    }
    if dataset_config is not None:
        config["dataset"] = dataset_config
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


def machine_load_section(cpu_count: int = 2, mean: float = 1.2, peak: float | None = None) -> dict:
    """A machine_load section: by default a machine busy with the run alone (mean below the
    cores); a mean above cpu_count is an overloaded machine."""
    return {
        "cpu_count": cpu_count,
        "load_1min_mean": mean,
        "load_1min_max": mean + 0.5 if peak is None else peak,
        "samples": 11,
    }


def write_failed_run(
    root: Path,
    run_id: str,
    optimizer: str,
    experiment: str = "demo",
    model: str = "mnist_ae",
    dataset: str = "fashion_mnist",
) -> Path:
    """A run that failed before training: summary.json only, as runners.run writes it."""
    run_dir = root / experiment / run_id
    run_dir.mkdir(parents=True)
    summary = {
        "run_id": run_id,
        "group": f"{experiment}-{optimizer}-failed",
        "experiment": experiment,
        "optimizer": optimizer,
        "model": model,
        "dataset": dataset,
        "seed": 0,
        "status": "failed",
        "error": "Invalid damping value: -1.0",
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir
