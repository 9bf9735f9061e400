"""Entry point: `python -m runners.train [overrides]`, or `-m` for a sweep.

    python -m runners.train optimizer=adam model=mnist_ae dataset=fashion_mnist
    python -m runners.train -m optimizer=sgd,adam seed=0,1
    python -m runners.train experiment=<name>          (conf/experiment/)

Each run records into runs/<experiment or "default">/<run_id>/ (runners.records). Bad input
stops a single run with one clear message and exit status 2; in a sweep, Hydra records the
failed job, runs the others, and reports the failure at the end. A diverged run is a result,
not an error.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from runners.build import UserInputError
from runners.config_schema import register_configs
from runners.environment import flush_denormals
from runners.run import RunIdentity, execute_run
from runners.run_identity import experiment_name, group_id, register_resolvers, run_id

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
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> str:
    hydra_cfg = HydraConfig.get()
    try:
        return execute_run(cfg, Path(hydra_cfg.runtime.output_dir), identify(cfg))
    except UserInputError as error:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise  # Hydra records this job as failed and runs the rest of the sweep
        log.error("%s", error)
        sys.exit(2)


if __name__ == "__main__":
    main()
