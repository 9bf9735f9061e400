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


class Stopwatch:
    """Wall-clock intervals measured by the test itself, around and inside each phase."""

    def __init__(self) -> None:
        self.inside: dict[str, float] = {}  # the busy work alone
        self.around: dict[str, float] = {}  # entering and leaving the phase included

    def busy(self, name: str, seconds: float) -> None:
        start = time.perf_counter()
        busy(seconds)
        self.inside[name] = self.inside.get(name, 0.0) + time.perf_counter() - start


def test_phases_are_exclusive_and_sum_to_the_step_time() -> None:
    """Bounds that hold however loaded the machine is: the clock's time for a phase is at
    least the work measured inside it and at most the time measured around it (minus what
    nested phases took)."""
    clock, watch = StepClock(torch.device("cpu")), Stopwatch()
    step_start = time.perf_counter()
    with clock.step():
        watch.busy("update", 0.01)  # unmarked: counted as "update"
        around_fb = time.perf_counter()
        with phase("forward_backward"):
            watch.busy("forward_backward", 0.02)
            around_stats = time.perf_counter()
            with phase("statistics"):  # nested: not counted again in forward_backward
                watch.busy("statistics", 0.03)
            watch.around["statistics"] = time.perf_counter() - around_stats
        watch.around["forward_backward"] = time.perf_counter() - around_fb
        around_inversion = time.perf_counter()
        with phase("inversion"):
            watch.busy("inversion", 0.015)
        watch.around["inversion"] = time.perf_counter() - around_inversion
    first_step = time.perf_counter() - step_start
    busy(0.05)  # between steps: not training time
    second_start = time.perf_counter()
    with clock.step(), phase("preconditioning"):
        watch.busy("preconditioning", 0.01)
    second_step = time.perf_counter() - second_start
    phases = clock.phase_s
    for name in ("statistics", "inversion", "preconditioning"):
        assert phases[name] >= watch.inside[name]
    assert watch.inside["statistics"] <= phases["statistics"] <= watch.around["statistics"]
    assert watch.inside["inversion"] <= phases["inversion"] <= watch.around["inversion"]
    fb_exclusive = watch.around["forward_backward"] - watch.inside["statistics"]
    assert watch.inside["forward_backward"] <= phases["forward_backward"] <= fb_exclusive
    assert phases["update"] >= watch.inside["update"]
    assert sum(phases.values()) == pytest.approx(clock.train_s, abs=1e-4)
    # the pause between the steps is not counted: the clock fits inside the two steps
    assert sum(watch.inside.values()) <= clock.train_s <= first_step + second_step
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
