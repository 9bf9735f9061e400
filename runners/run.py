"""One run from start to end: skip, resume or start; build; train; record; close W&B.

    completed or diverged before  -> skipped (trainer.force=true starts it again)
    a checkpoint is there         -> resumed from it (a killed run continues)
    otherwise                     -> started
Bad input fails in `build_run`, before training, with status `failed` and the message in
summary.json; no run directory is ever left claiming success.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from contract.records import FAILED, FINAL_STATUSES
from runners.build import UserInputError, build_run, parameter_count
from runners.checkpoint import load_checkpoint
from runners.environment import collect_environment
from runners.records import RunRecords
from runners.trainer import Trainer
from runners.wandb_sink import WandbSink

log = logging.getLogger(__name__)


@dataclass
class RunIdentity:
    """What a run is, for summary.json and W&B (runners.run_identity computes the ids)."""

    run_id: str
    group: str
    experiment: str
    optimizer: str
    model: str
    dataset: str
    seed: int


def _wandb_id(identity: RunIdentity, attempt: int) -> str:
    return identity.run_id if attempt == 0 else f"{identity.run_id}-{attempt}"


def execute_run(cfg: DictConfig, run_dir: Path, identity: RunIdentity) -> str:
    """Run (or skip, or resume) one configured run in run_dir; returns its status."""
    records = RunRecords(run_dir)
    previous = records.read_summary() or {}
    attempt = int(previous.get("attempt", 0))
    if previous.get("status") in FINAL_STATUSES and not cfg.trainer.force:
        log.info(
            "%s is already %s: skipped (trainer.force=true runs it again)",
            run_dir,
            previous["status"],
        )
        return str(previous["status"])
    if cfg.trainer.force and previous:
        records.discard_progress()
        attempt += 1
    summary_identity: dict[str, Any] = {
        **asdict(identity),
        "attempt": attempt,
        "wandb_id": _wandb_id(identity, attempt),
        "started_at": previous.get("started_at") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_dir": str(run_dir),
    }
    try:
        built = build_run(cfg, identity.model, identity.dataset)
    except UserInputError as error:
        records.write_summary({**summary_identity, "status": FAILED, "error": str(error)})
        raise
    summary_identity["parameters"] = parameter_count(built.model)
    records.write_config(cfg)
    records.write_environment(collect_environment(built.device))

    trainer = Trainer(built, cfg.trainer, records, summary_identity)
    checkpoint = load_checkpoint(records.checkpoint_path, built.device)
    if checkpoint is not None:
        trainer.load_state_dict(checkpoint)
        log.info("resuming %s from its checkpoint at step %d", run_dir, trainer.progress.step)
    sink = None
    if cfg.logger.wandb:
        sink = WandbSink(
            cfg.logger,
            run_dir,
            wandb_id=summary_identity["wandb_id"],
            group=identity.group,
            name=f"{identity.optimizer}-{identity.model}-{identity.dataset}-s{identity.seed}",
            tags=[identity.optimizer, identity.model, identity.dataset],
            config={
                **OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
                "run": asdict(identity),
            },
        )
        trainer.sinks.append(sink)
    status = FAILED
    try:
        status = trainer.train()
    except BaseException as error:
        trainer.write_summary(FAILED, error=f"{type(error).__name__}: {error}")
        raise
    finally:
        if sink is not None:
            sink.close(status, {"best": trainer.progress.best, "steps": trainer.progress.step})
    log.info(
        "%s: %s after %d steps (%.1f s of training)",
        run_dir,
        status,
        trainer.progress.step,
        trainer.clock.train_s,
    )
    return status
