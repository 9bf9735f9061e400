"""One run from start to end: lock, skip, resume or start; build; train; record; close W&B.

    completed or diverged before  -> skipped (trainer.force=true starts it again)
    a readable checkpoint         -> resumed from it (a killed or stopped run continues); a
                                     damaged newest checkpoint falls back to the previous one
    otherwise                     -> started from step 0, records of an earlier attempt
                                     that left no checkpoint discarded (said in one line)

Nothing a user or a cluster does ends in a traceback: bad input fails in `build_run`, before
training, with status `failed` and the message in summary.json; a run directory in use by
another process, or one the file system will not let us write, is one line; a stop signal
checkpoints (runners.interrupts). An error of the harness itself (a bug) is one line too,
with the traceback in <run_dir>/error.txt. Every outcome is a RunOutcome, which the entry
point turns into an exit status and a sweep into its summary (runners.sweeper).

A data-parallel run (runners.distributed: torchrun, SLURM) runs this on every rank with the
same decisions: rank 0 alone holds the lock and reads the run directory, and broadcasts what
it found (the lock's outcome, the previous summary, the checkpoint's bytes), so all ranks
skip, resume or start alike; a bad input on any rank fails every rank with its message.
Every rank then builds its part of the run, loads the same checkpoint and trains; rank 0
alone writes records (RankRecords elsewhere), the checkpoint and W&B. `world_size` is
recorded in summary.json and environment.json; it is not part of the run's identity, so a
run resumes on another number of processes.
"""

from __future__ import annotations

import logging
import time
import traceback
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from contract.records import FAILED, FINAL_STATUSES, INTERRUPTED, MACHINE_LOAD
from runners.build import UserInputError, build_run, parameter_count
from runners.checkpoint import LoadedCheckpoint, load_checkpoint, load_checkpoint_bytes
from runners.distributed import SINGLE, World, rank_seed
from runners.environment import collect_environment
from runners.interrupts import RunInterrupted, stop_on_signals
from runners.progress import progress_bar
from runners.records import RankRecords, RecordsWriteError, RunRecords
from runners.run_lock import RunDirectoryBusy, run_directory_lock
from runners.trainer import Trainer
from runners.wandb_sink import WandbSink

log = logging.getLogger(__name__)

# outcomes that are not a status of the run's records
SKIPPED = "skipped"  # already completed or diverged
BUSY = "busy"  # its directory is in use by another process


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
    # whether conf/tuned/<experiment>/<optimizer>.yaml gave the optimizer its settings for the
    # experiment (None: no experiment chosen, or it could not be told)
    tuned: bool | None = None


@dataclass(frozen=True)
class RunOutcome:
    """How one run ended, for the exit status and the sweep summary (picklable: submitit
    sends it back from the cluster)."""

    status: str  # completed, diverged, failed (contract.records), skipped or busy
    run_dir: str
    reason: str | None = None  # one line for failed and busy
    user_error: bool = False  # bad input (exit status 2)


def _wandb_id(identity: RunIdentity, attempt: int) -> str:
    return identity.run_id if attempt == 0 else f"{identity.run_id}-{attempt}"


def _unwritable(run_dir: Path, error: RecordsWriteError) -> RunOutcome:
    reason = (
        f"{error}. Free space or fix the permissions (or choose another "
        "paths.runs_dir), then rerun the same command: it resumes from its last checkpoint"
    )
    log.error("%s", reason)
    return RunOutcome(FAILED, str(run_dir), reason)


def execute_run(
    cfg: DictConfig, run_dir: Path, identity: RunIdentity, world: World = SINGLE
) -> RunOutcome:
    """Run (or skip, or resume) one configured run in run_dir, as one rank of `world` (one
    process by default). Raises only RunInterrupted and KeyboardInterrupt (a stop asked for:
    the sweep stops too)."""
    with ExitStack() as held:
        outcome = None
        try:
            if world.is_main:
                records: RunRecords = RunRecords(run_dir)
                held.enter_context(run_directory_lock(records.run_dir, cfg.trainer.lock_wait_s))
            else:
                records = RankRecords(run_dir)
        except RunDirectoryBusy as busy:
            log.error("%s", busy)
            outcome = RunOutcome(BUSY, str(run_dir), str(busy))
        except RecordsWriteError as error:
            outcome = _unwritable(run_dir, error)
        outcome = world.broadcast_object(outcome)  # every rank leaves, or none
        if outcome is not None:
            return outcome
        try:
            return _execute_locked(cfg, records, identity, world)
        except RecordsWriteError as error:  # rank 0's: the others fail on its exit
            return _unwritable(run_dir, error)


def _execute_locked(
    cfg: DictConfig, records: RunRecords, identity: RunIdentity, world: World
) -> RunOutcome:
    run_dir = records.run_dir
    # rank 0's reading of the directory decides for every rank
    previous = world.broadcast_object(records.read_summary() or {})
    attempt = int(previous.get("attempt", 0))
    if previous.get("status") in FINAL_STATUSES and not cfg.trainer.force:
        log.info(
            "%s is already %s: skipped (trainer.force=true runs it again)",
            run_dir,
            previous["status"],
        )
        return RunOutcome(SKIPPED, str(run_dir), f"already {previous['status']}")
    if cfg.trainer.force and previous:
        records.discard_progress()
        attempt += 1
    summary_identity: dict[str, Any] = {
        **asdict(identity),
        "attempt": attempt,
        "wandb_id": _wandb_id(identity, attempt),
        "started_at": previous.get("started_at") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_dir": str(run_dir),
        "world_size": world.size,
    }
    built, problem = None, None
    try:
        built = build_run(cfg, identity.model, identity.dataset, world)
    except UserInputError as error:
        problem = str(error)
    if world.distributed:  # a bad input on any rank fails them all, with the first message
        problem = next((p for p in world.all_gather_object(problem) if p is not None), None)
    if problem is not None or built is None:
        records.write_summary({**summary_identity, "status": FAILED, "error": problem})
        log.error("%s", problem)
        return RunOutcome(FAILED, str(run_dir), problem, user_error=True)
    if world.distributed:
        # every rank starts from rank 0's weights (they are equal already: the same seed);
        # and draws its own random numbers (sampled labels), rank 0 those of one process
        world.broadcast_tensors([*built.model.parameters(), *built.model.buffers()])
        if not world.is_main:
            torch.manual_seed(rank_seed(cfg.seed, world.rank))
    summary_identity["parameters"] = parameter_count(built.model)
    records.write_config(cfg)
    records.write_environment({**collect_environment(built.device), "world_size": world.size})

    with stop_on_signals() as stop:
        trainer = Trainer(
            built, cfg.trainer, records, summary_identity, stop=stop, world=world, seed=cfg.seed
        )
        _resume_or_restart(trainer, records, built.device, world)
        description = f"{identity.optimizer} {identity.model}/{identity.dataset} s{identity.seed}"
        show_bar = cfg.trainer.progress_bar if world.is_main else False
        with progress_bar(show_bar, description, trainer.total_steps, trainer.progress.step) as bar:
            trainer.bar = bar
            return _train(cfg, trainer, records, identity, summary_identity)


def _shared_checkpoint(records: RunRecords, device: Any, world: World) -> LoadedCheckpoint:
    """The checkpoint rank 0 reads, on every rank: rank 0 chooses (the newest readable one)
    and sends its bytes, which every other rank loads onto its own device; so all resume from
    the same file, and only rank 0's node needs the run directory."""
    loaded = load_checkpoint(records.checkpoint_path, device) if world.is_main else None
    if not world.distributed:
        assert loaded is not None
        return loaded
    raw, path, unreadable = world.broadcast_object(
        None if loaded is None else (loaded.raw, loaded.path, loaded.unreadable)
    )
    if loaded is None:
        state = None if raw is None else load_checkpoint_bytes(raw, device)
        loaded = LoadedCheckpoint(state, path, unreadable)
    return loaded


def _resume_or_restart(trainer: Trainer, records: RunRecords, device: Any, world: World) -> None:
    loaded = _shared_checkpoint(records, device, world)
    for problem in loaded.unreadable:
        log.warning("%s: checkpoint unreadable: %s", records.run_dir, problem)
    if loaded.state is not None:
        trainer.load_state_dict(loaded.state)
        log.info(
            "resuming %s from %s at step %d",
            records.run_dir,
            loaded.path.name if loaded.path else "its checkpoint",
            trainer.progress.step,
        )
        return
    discarded = records.discard_metrics()
    if discarded or loaded.unreadable:
        log.warning(
            "%s: no readable checkpoint to resume from: restarting from step 0 "
            "(%d metric records of the earlier attempt discarded)",
            records.run_dir,
            discarded,
        )


def _train(
    cfg: DictConfig,
    trainer: Trainer,
    records: RunRecords,
    identity: RunIdentity,
    summary_identity: dict[str, Any],
) -> RunOutcome:
    run_dir = records.run_dir
    sink = None
    if cfg.logger.wandb and trainer.world.is_main:
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
            },  # world_size is in the summary, as in summary.json (not the run's config)
        )
        sink.replay(records.read_metrics())
        trainer.sinks.append(sink)
    status = FAILED
    try:
        status = trainer.train()
    except RunInterrupted:
        status = INTERRUPTED  # the trainer checkpointed and wrote the summary
        raise
    except (KeyboardInterrupt, SystemExit):
        # a second Ctrl-C, or a launcher's own exit: no checkpoint at this step
        status = INTERRUPTED
        trainer.write_summary(INTERRUPTED, note="stopped without a checkpoint at this step")
        raise
    except RecordsWriteError as error:
        with suppress(OSError):  # best effort: the file system may take a small file still
            trainer.write_summary(FAILED, error=str(error))
        raise
    except Exception as error:
        reason = f"{type(error).__name__}: {error}".strip().splitlines()[0]
        records.write_error(traceback.format_exc())
        trainer.write_summary(FAILED, error=reason)
        log.error("%s failed: %s (traceback: %s)", run_dir, reason, records.error_path)
        return RunOutcome(FAILED, str(run_dir), f"{reason} (traceback: {records.error_path})")
    finally:
        if sink is not None:
            summary = trainer.summary_fields(status)
            sink.close(status, {key: summary[key] for key in ("best", "steps", MACHINE_LOAD)})
    log.info(
        "%s: %s after %d steps (%.1f s of training)",
        run_dir,
        status,
        trainer.progress.step,
        trainer.clock.train_s,
    )
    return RunOutcome(status, str(run_dir))
