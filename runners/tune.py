"""Entry point: `python -m runners.tune [overrides] [tune.<key>=<value>]`.

    python -m runners.tune experiment=demo optimizer=sgd,adam,kfac,shampoo \
        dataset.validation_size=10000 trainer.max_epochs=2 tune.trials=8 tune.seeds=3

is `python -m runners.train -m hydra/sweeper=tune hydra.sweeper.<key>=<value> ...`: a Hydra
multirun whose sweeper runs one Optuna study per optimizer (runners.tuning), so every trial is
an ordinary run of runners.train, on any of Hydra's launchers (hydra/launcher=slurm for a
cluster). A sweeper rather than a command of its own, because that is what keeps trials
ordinary runs, and because Hydra's own hydra-optuna-sweeper pins optuna < 3 and does not run
with current SQLAlchemy. The tune.<key> settings are conf/hydra/sweeper/tune.yaml's.

Rerunning the same command continues its studies: finished trials are kept, a trial whose
worker was killed resumes from its checkpoint, and no trial runs twice; several copies of the
command on one storage share the trials.
"""

from __future__ import annotations

import runpy
import sys

TUNE_PREFIX = "tune."


def hydra_arguments(arguments: list[str]) -> list[str]:
    """runners.tune's command line as runners.train's."""
    translated = [
        f"hydra.sweeper.{item.removeprefix(TUNE_PREFIX)}" if item.startswith(TUNE_PREFIX) else item
        for item in arguments
    ]
    return ["-m", "hydra/sweeper=tune", *translated]


def cli() -> None:
    sys.argv = [sys.argv[0], *hydra_arguments(sys.argv[1:])]
    # as `python -m runners.train`: Hydra finds conf/ from the main module's file
    runpy.run_module("runners.train", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    cli()
