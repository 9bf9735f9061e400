"""Time per training step of each optimizer by kind of step, weighted by its schedule.

A curvature method's steps are of up to three kinds, by the step counter t (optimizers.base):
with T1 = curvature_every and T2 = inverse_every (T1 dividing T2), after the first T2 steps

    refresh     t % T2 == 0            statistics and inverses (K-BFGS: and its second pass)
    statistics  t % T1 == 0, else      statistics only
    plain       otherwise              the step alone

so over a period of T2 steps there is 1 refresh, T2/T1 - 1 statistics steps and T2 - T2/T1
plain steps, and the mean time per step is

    c = (c_refresh + (T2/T1 - 1) c_statistics + (T2 - T2/T1) c_plain) / T2.

Each kind is timed directly: before a timed step the optimizer's step counter is set to a t
of that kind far past T2 (nothing else in the optimizer depends on t), and the step runs as
in training, `optimizer.step(StepClosure(...))` inside the runner's StepClock, synchronised on
GPU, so the per-phase breakdown is the one the run records report. This measures a CNN's
10/100 schedule without running 100 steps per sample. Optimizers without a schedule
(torch.optim's) have plain steps only.

Rounds interleave the optimizers, so slow drifts of a shared machine hit all of them alike;
each round yields one sample of c per optimizer. Reported: the median over rounds, the spread
(interquartile range) of the samples, and the ratio to SGD-m as the median over rounds of the
two samples' ratio in the same round (runners.bench.run.paired_ratio).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import Tensor

from optimizers.base import SCHEDULE
from optimizers.phases import PHASES
from runners.build import BuiltRun
from runners.clock import StepClock
from runners.closure import StepClosure
from runners.memory import optimizer_state_bytes, peak_memory_bytes, reset_peak_memory

FAR = 10**6  # refresh periods before the timed steps' counters: past every warm-up phase
TIMED_PHASES = tuple(phase for phase in PHASES if phase != "data")  # batches are prepared


def step_kinds(optimizer: torch.optim.Optimizer) -> dict[str, tuple[int, float]]:
    """{kind: (step counter t of that kind, steps of that kind per step)} for `optimizer`."""
    schedule = optimizer.state.get(SCHEDULE)
    if not isinstance(schedule, dict) or "step" not in schedule:
        return {"plain": (0, 1.0)}
    curvature_every = optimizer.curvature_every  # type: ignore[attr-defined]
    inverse_every = optimizer.inverse_every  # type: ignore[attr-defined]
    if inverse_every % curvature_every != 0:
        raise ValueError(
            f"{type(optimizer).__name__}: the benchmark needs curvature_every "
            f"({curvature_every}) to divide inverse_every ({inverse_every})"
        )
    base = FAR * inverse_every
    statistics_per_period = inverse_every // curvature_every
    kinds = {"refresh": (base, 1.0 / inverse_every)}
    if statistics_per_period > 1:
        kinds["statistics"] = (base + curvature_every, (statistics_per_period - 1) / inverse_every)
    if curvature_every > 1:
        kinds["plain"] = (base + 1, (inverse_every - statistics_per_period) / inverse_every)
    return kinds


@dataclass
class Contender:
    """One optimizer on its own copy of the problem, and its measurements."""

    name: str
    built: BuiltRun
    batches: list[tuple[Tensor, Tensor]]
    kinds: dict[str, tuple[int, float]] = field(init=False)
    seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    phases: dict[str, dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
    peak_bytes: int = 0
    samples_s: list[float] = field(default_factory=list)
    next_batch: int = 0
    autocast: torch.dtype | None = None  # trainer.precision's autocast (runners.trainer)

    def __post_init__(self) -> None:
        self.kinds = step_kinds(self.built.optimizer)

    def step(self, counter: int | None = None) -> StepClock:
        """One training step (at step counter `counter`, when given) on the next batch."""
        optimizer = self.built.optimizer
        if counter is not None and SCHEDULE in optimizer.state:
            optimizer.state[SCHEDULE]["step"] = counter
        inputs, targets = self.batches[self.next_batch % len(self.batches)]
        self.next_batch += 1
        clock = StepClock(self.built.device)
        with clock.step():
            closure = StepClosure(
                self.built.model, self.built.likelihood, inputs, targets, self.autocast
            )
            optimizer.step(closure)
        return clock

    def warm_up(self, steps: int) -> None:
        """The first steps as in training (inverses every T1 while t < T2), then one step of
        each kind, so that every buffer, factor and allocation exists before timing."""
        for _ in range(steps):
            self.step()
        for counter, _ in self.kinds.values():
            self.step(counter)

    def run_round(self) -> None:
        """One timed step of each kind; one sample of the weighted time per step."""
        device = self.built.device
        reset_peak_memory(device)
        sample = 0.0
        for kind, (counter, weight) in self.kinds.items():
            clock = self.step(counter)
            self.seconds[kind].append(clock.train_s)
            for name, seconds in clock.phase_s.items():
                self.phases[kind][name] += seconds
            sample += weight * clock.train_s
        self.peak_bytes = max(self.peak_bytes, peak_memory_bytes(device))
        self.samples_s.append(sample)

    # ------------------------------------------------------------------ results
    @property
    def median_s(self) -> float:
        return statistics.median(self.samples_s)

    @property
    def spread(self) -> float:
        """Interquartile range of the per-round samples over their median."""
        if len(self.samples_s) < 2:
            return 0.0
        quartiles = statistics.quantiles(self.samples_s, n=4, method="inclusive")
        return (quartiles[2] - quartiles[0]) / self.median_s

    def phase_means_s(self) -> dict[str, float]:
        """Mean seconds per step in each phase, weighted by the schedule."""
        means = dict.fromkeys(TIMED_PHASES, 0.0)
        for kind, (_, weight) in self.kinds.items():
            rounds = len(self.seconds[kind])
            for name, seconds in self.phases[kind].items():
                if name in means:
                    means[name] += weight * seconds / rounds
        return means

    def kind_medians_s(self) -> dict[str, float]:
        return {kind: statistics.median(values) for kind, values in self.seconds.items()}

    @property
    def state_bytes(self) -> int:
        return optimizer_state_bytes(self.built.optimizer)
