"""Entry point: `python -m runners.train [overrides]`, or `-m` for a sweep.

    python -m runners.train optimizer=adam model=mnist_ae dataset=fashion_mnist
    python -m runners.train -m optimizer=sgd,adam seed=0,1
    python -m runners.train experiment=<name>          (conf/experiment/)

Each run records into runs/<experiment or "default">/<run_id>/ (runners.records). Every way a
run can end is one line on the console, never a traceback (runners.run), and an exit status:

    0     completed, diverged (a result, not an error) or skipped (already done)
    1     failed (the reason is in summary.json; a harness error's traceback in error.txt),
          the records could not be written, or the run directory is in use by another process
    2     bad input, said before training
    130   Ctrl-C, 143 SIGTERM: checkpointed at the current step; rerun the same command

In a sweep every job runs whatever the others did: a failed job is one line when it fails,
and the sweep ends with one summary of all its jobs (runners.sweeper), exit status 1 when a
job failed. A stop signal stops the whole sweep after checkpointing the current job.

Data parallel, one run on G processes (runners.distributed; README, "Several GPUs or nodes"):

    torchrun --standalone --nproc-per-node=G -m runners.train [overrides]
    python -m runners.train -m hydra/launcher=slurm hydra.launcher.tasks_per_node=G ...

Every rank exits with the same status; only rank 0 writes and prints (others: errors only).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from contract.records import FAILED
from runners.config_schema import register_configs
from runners.distributed import distributed_world
from runners.environment import flush_denormals
from runners.interrupts import RunInterrupted
from runners.run import BUSY, RunIdentity, RunOutcome, execute_run
from runners.run_identity import (
    DEFAULT_EXPERIMENT,
    experiment_name,
    group_id,
    register_resolvers,
    run_id,
)

log = logging.getLogger("sobench")

register_configs()
register_resolvers()
flush_denormals()  # before torch's first parallel operation (runners.environment)


def optimizer_label(cfg: DictConfig, choice: str | None, overrides: list[str]) -> str:
    """The optimizer's name in records and plots: its config file's name, unless its class was
    replaced on the command line (then the class name, e.g. `rmsprop`)."""
    replaced = any(item.lstrip("+~").startswith("optimizer._target_=") for item in overrides)
    if replaced or not choice:
        return str(cfg.optimizer._target_).rsplit(".", 1)[-1].lower()
    return choice


def has_tuned_settings(experiment: str, optimizer_choice: str | None) -> bool | None:
    """Whether conf/tuned/<experiment>/<optimizer>.yaml exists (Hydra's search path), with a
    warning when it does not; None without an experiment, or when Hydra cannot be asked."""
    if experiment == DEFAULT_EXPERIMENT or not optimizer_choice:
        return None
    try:
        loader = GlobalHydra.instance().config_loader()
        tuned = optimizer_choice in loader.get_group_options(f"tuned/{experiment}")
    except Exception:  # no Hydra context (a launcher's remote job may not rebuild one)
        return None
    if not tuned:
        log.warning(
            "no conf/tuned/%s/%s.yaml: optimizer=%s runs with its defaults "
            "(conf/optimizer/%s.yaml) and the command line's values, not with settings for "
            "experiment=%s",
            experiment,
            optimizer_choice,
            optimizer_choice,
            optimizer_choice,
            experiment,
        )
    return tuned


def identify(cfg: DictConfig) -> RunIdentity:
    hydra_cfg = HydraConfig.get()
    choices = hydra_cfg.runtime.choices
    experiment = experiment_name(choices)
    return RunIdentity(
        run_id=run_id(cfg, experiment),
        group=group_id(cfg, experiment),
        experiment=experiment,
        optimizer=optimizer_label(cfg, choices.get("optimizer"), list(hydra_cfg.overrides.task)),
        model=str(choices.get("model")),
        dataset=str(choices.get("dataset")),
        seed=int(cfg.seed),
        tuned=has_tuned_settings(experiment, choices.get("optimizer")),
    )


def exit_status(outcome: RunOutcome) -> int:
    if outcome.status in (FAILED, BUSY):
        return 2 if outcome.user_error else 1
    return 0


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> RunOutcome:
    hydra_cfg = HydraConfig.get()
    # the process group (several processes) for this run, destroyed when it ends
    with distributed_world(str(cfg.device)) as world:
        try:
            outcome = execute_run(cfg, Path(hydra_cfg.runtime.output_dir), identify(cfg), world)
        except RunInterrupted as interrupted:
            log.warning("%s: %s", hydra_cfg.runtime.output_dir, interrupted)
            interrupted.request.pass_on()  # a launcher's own handler (submitit requeues there)
            sys.exit(interrupted.exit_status)
    if hydra_cfg.mode != RunMode.MULTIRUN and exit_status(outcome):
        sys.exit(exit_status(outcome))
    return outcome  # a sweep's job: the sweeper counts it (runners.sweeper)


# Hydra settings of ranks other than 0 under torchrun: no .hydra/ copy of the config and no
# log file in the run directory (rank 0 writes both). Not part of the run's identity.
OTHER_RANKS_HYDRA = ("hydra.output_subdir=null", "hydra/job_logging=stdout")


def cli() -> None:
    """`python -m runners.train`: Hydra's main, with Ctrl-C outside a run as one line."""
    if int(os.environ.get("RANK", "0") or 0) > 0:
        sys.argv += OTHER_RANKS_HYDRA
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    cli()
