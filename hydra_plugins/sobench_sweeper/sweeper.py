"""SummarizingSweeper: Hydra's basic sweeper, then runners.sweeper.report_sweep."""

from __future__ import annotations

from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from runners.sweeper import report_sweep


class SummarizingSweeper(BasicSweeper):
    def sweep(self, arguments: list[str]) -> Any:
        # runners.train.main returns an outcome for every failure, so the basic sweeper's
        # check of each job's return value, which re-raises a job's exception, passes
        batches = super().sweep(arguments)
        report_sweep(batches)
        return batches
