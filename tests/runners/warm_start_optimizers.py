"""Optimizers with a warm start, for the runner's warm-start tests (built by `_target_`)."""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch

from runners.closure import StepClosure

WARM_START_SECONDS = 2.0


class SGDWithWarmStart(torch.optim.SGD):
    """SGD whose warm start runs every closure (training-mode forward and backward passes,
    which move BatchNorm's running statistics) and takes WARM_START_SECONDS."""

    def warm_start(self, closures: Iterable[StepClosure]) -> None:
        for closure in closures:
            closure()
        time.sleep(WARM_START_SECONDS)


class WeightChangingWarmStart(torch.optim.SGD):
    """A broken warm start: it takes a step."""

    def warm_start(self, closures: Iterable[StepClosure]) -> None:
        self.step(next(iter(closures)))
