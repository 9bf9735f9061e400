"""Harness overhead: the runner's time per step against a bare PyTorch loop.

The runner is the real one: runners.trainer.Trainer's epoch loop (the batch from the seeded
shuffler, the StepClosure, the phase listener, the StepClock, the loss bookkeeping), and its
time per step is what the run records report, the clock's training seconds over steps. The
bare loop is what one would write by hand around the same model, optimizer and batches:

    for each batch: x, y = batch; opt.zero_grad(); likelihood.loss(model(x), y).backward();
                    opt.step()

timed from before the batch to after the step (synchronised on GPU). Both take the same SGD-m
(conf/optimizer/sgd.yaml) steps on their own copies of the same model, interleaved epoch by
epoch (alternating which goes first); the overhead is the median over epochs of the ratio of
their times per step in that epoch, minus 1.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from runners.bench.problems import BenchProblem, problem_config
from runners.build import BuiltRun, build_run
from runners.records import RunRecords
from runners.trainer import Trainer

BASELINE = "sgd"


@dataclass(frozen=True)
class Overhead:
    runner_s: float  # median seconds per step, runner
    bare_s: float  # median seconds per step, bare loop
    fraction: float  # median over rounds of runner / bare - 1, both measured in that round


def _synchronize(built: BuiltRun) -> None:
    if built.device.type == "cuda":
        torch.cuda.synchronize()


def bare_epoch(built: BuiltRun, epoch: int) -> float:
    """One epoch of the hand-written loop; mean seconds per step."""
    model, optimizer, likelihood = built.model, built.optimizer, built.likelihood
    order = built.batches.epoch(epoch)
    steps = built.batches.steps_per_epoch
    _synchronize(built)
    start = time.perf_counter()
    for index in range(steps):
        inputs, targets = order.batch(index)
        optimizer.zero_grad(set_to_none=True)
        likelihood.loss(model(inputs), targets).backward()
        optimizer.step()
    _synchronize(built)
    return (time.perf_counter() - start) / steps


def runner_epoch(trainer: Trainer) -> float:
    """One epoch of the runner's loop; mean seconds per step on its training clock."""
    start_s, start_step = trainer.clock.train_s, trainer.progress.step
    trainer._train_epoch()  # the loop a run trains with (evaluation is outside it anyway)
    trainer.progress.epoch += 1
    return (trainer.clock.train_s - start_s) / (trainer.progress.step - start_step)


def harness_overhead(problem: BenchProblem, device: str, rounds: int) -> Overhead:
    """The runner against the bare loop, SGD-m on `problem`, `rounds` interleaved epochs
    after one warm-up epoch each."""
    cfg = problem_config(problem, BASELINE, problem.schedule, device)
    cfg.trainer.log_every_steps = 10**9  # no metric lines: the loop alone
    bare = build_run(cfg, problem.model, problem.dataset)
    runner = build_run(cfg, problem.model, problem.dataset)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(runner, cfg.trainer, RunRecords(Path(run_dir)), identity={})
        bare_s, runner_s = [], []
        for epoch in range(rounds + 1):
            # alternate which loop goes first, so that neither always follows the other
            if epoch % 2:
                runner_time, bare_time = runner_epoch(trainer), bare_epoch(bare, epoch)
            else:
                bare_time, runner_time = bare_epoch(bare, epoch), runner_epoch(trainer)
            if epoch > 0:  # the first epoch warms both up
                bare_s.append(bare_time)
                runner_s.append(runner_time)
    ratios = [runner / bare for runner, bare in zip(runner_s, bare_s, strict=True)]
    return Overhead(
        statistics.median(runner_s), statistics.median(bare_s), statistics.median(ratios) - 1.0
    )
