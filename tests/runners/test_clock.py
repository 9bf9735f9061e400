"""The training clock counts steps only and attributes each moment to the innermost phase."""

from __future__ import annotations

import time

import pytest
import torch

from optimizers.phases import phase
from runners.clock import StepClock, timed_outside_training


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_phases_are_exclusive_and_sum_to_the_step_time() -> None:
    clock = StepClock(torch.device("cpu"))
    with clock.step():
        busy(0.01)  # unmarked: counted as "update"
        with phase("forward_backward"):
            busy(0.02)
            with phase("statistics"):  # nested: not counted again in forward_backward
                busy(0.03)
        with phase("inversion"):
            busy(0.015)
    busy(0.05)  # between steps: not training time
    with clock.step(), phase("preconditioning"):
        busy(0.01)
    phases = clock.phase_s
    assert phases["statistics"] == pytest.approx(0.03, abs=0.004)
    assert phases["forward_backward"] == pytest.approx(0.02, abs=0.004)
    assert phases["inversion"] == pytest.approx(0.015, abs=0.004)
    assert phases["preconditioning"] == pytest.approx(0.01, abs=0.004)
    assert phases["update"] == pytest.approx(0.01, abs=0.004)
    assert sum(phases.values()) == pytest.approx(clock.train_s, abs=1e-4)
    assert clock.train_s == pytest.approx(0.085, abs=0.01)
    assert clock.process_s > 0


def test_phases_outside_a_step_are_not_timed() -> None:
    clock = StepClock(torch.device("cpu"))
    with phase("statistics"):
        busy(0.005)
    assert clock.train_s == 0 and not clock.phase_s


def test_work_outside_training_has_its_own_total() -> None:
    totals: dict[str, float] = {}
    for _ in range(2):
        with timed_outside_training(torch.device("cpu"), totals, "eval_s"):
            busy(0.01)
    assert totals["eval_s"] == pytest.approx(0.02, abs=0.005)


def test_state_round_trip() -> None:
    clock = StepClock(torch.device("cpu"))
    with clock.step(), phase("data"):
        busy(0.002)
    restored = StepClock(torch.device("cpu"))
    restored.load_state_dict(clock.state_dict())
    assert restored.state_dict() == clock.state_dict()
