"""TuneSweeper (hydra/sweeper=tune): `-m` over Optuna studies instead of a grid.

Each combination of the command line's comma lists (e.g. optimizer=sgd,adam) is one study;
its trials and final runs are jobs of Hydra's launcher, like a grid sweep's (runners.tuning).
Every study is planned and checked before the first trial, so a bad search space, a missing
validation split or a wrong sampler is one message and exit status 2.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from runners.build import UserInputError
from runners.run import RunOutcome
from runners.sweeper import outcome_of, report_sweep
from runners.tuning.plan import (
    TuneSettings,
    check_before_trials,
    plan_study,
    run_study,
    study_overrides,
)

log = logging.getLogger("sobench")


class TuneSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = TuneSettings(**settings)
        self.jobs: list[JobReturn] = []

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _launch(self, overrides: list[list[str]]) -> list[RunOutcome]:
        returns = list(self.launcher.launch(overrides, initial_job_idx=len(self.jobs)))
        self.jobs += returns
        return [outcome_of(job) for job in returns]

    def sweep(self, arguments: list[str]) -> Sequence[JobReturn]:
        loader = self.hydra_context.config_loader
        plans = []
        try:
            for overrides in study_overrides(arguments):
                cfg = loader.load_sweep_config(self.config, overrides)
                plans.append(plan_study(cfg, overrides, self.settings))
            check_before_trials(plans)
        except (ValueError, UserInputError) as error:  # TuningError, SearchSpaceError
            print(f"tune: {error}", file=sys.stderr)
            sys.exit(2)
        summary = []
        for plan in plans:
            summary += run_study(plan, self.settings, self._launch)
        print("\n".join(summary), flush=True)
        report_sweep([self.jobs])
        return self.jobs
