"""The training loop: budget, clock, evaluation, logging, divergence, checkpoints and stops.

One step is `optimizer.step(StepClosure(...))` inside the training clock (runners.clock).
Between steps, outside the clock: evaluation once per `eval_every_epochs` (full training loss
and test loss, accuracy for classifiers), metric records, checkpoints, the progress bar, and
a look at the stop request (runners.interrupts). Before step 0, also outside the clock: an
evaluation at the initial weights (so curves start at epoch 0, time 0) and then, for
optimizers that define `warm_start(closures)`, the warm-start pass over `warm_start_batches`
mini-batches (timed separately as `time/warm_start_s`), followed by a checkpoint so that a
run stopped in its first epoch does not warm-start again. A warm start may only gather
statistics: changed weights are an error, and the model's buffers (BatchNorm's running
statistics, moved by its training-mode forward passes) are restored, so every method starts
training from the same model.

The evaluation at step 0 of a network with BatchNorm normalises each evaluation batch with
its own statistics: the running statistics have not seen any data yet (mean 0, variance 1),
and the eval-mode loss at that point says nothing about the network (a test loss of ~850
against ~7 for ResNet-32). From the first epoch on, evaluation is the usual eval mode.

Metric names are contract.records' (the analysis reads them):
    every log_every_steps steps: step, epoch, train/loss, train/loss_ema, time/train_s, lr
    every evaluation, also: train/full_loss, test/loss (unless trainer.evaluate_test=false),
        valid/loss (with a validation split), their /accuracy and train/accuracy
        (classifiers), time/process_s, time/eval_s, time/warm_start_s,
        model/weight_sq_norm, mem/peak_bytes, mem/optimizer_state_bytes,
        time/phase/<phase>_s (optimizers.phases)
`step` counts optimizer steps; `epoch` is step / steps_per_epoch; times are cumulative.

A non-finite training loss ends the run with status `diverged`: recorded, closed, and not an
error, so a sweep goes on. A stop request (SIGTERM, Ctrl-C) between two steps saves a
checkpoint at that step, records `interrupted` and raises RunInterrupted; the mini-batch
order is a function of (seed, epoch), so the rerun continues inside the epoch.

In a data-parallel run (runners.distributed) every rank runs this loop on its slice of each
global mini-batch, and every branch that ends a loop is taken by all ranks alike, or one
rank would wait forever in a collective the others have left. So a stop request, the time
budget and a non-finite loss are agreed on: after every step (and every warm-start batch,
and before every epoch), one all-reduce (max) of this rank's signal number, time-spent flag
and non-finite flag; every rank then stops at the same step, whichever of them was signalled
(torchrun and SLURM signal all of them, a user may signal one), and rank 0 checkpoints there.
Every rank computes the same records (losses and evaluations are global); rank 0 writes them.
A checkpoint holds every rank's random state; a run resumed on as many ranks restores each
its own, on another number of ranks rank 0 restores its own and the others draw afresh.

`trainer.precision=bfloat16` runs the forward pass and loss of every step's closure (the
warm start's too) and of every evaluation under bfloat16 autocast (runners.closure), so that
training and evaluation metrics come from the same model arithmetic.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from contract.records import (
    COMPLETED,
    DIVERGED,
    EPOCH,
    EVAL_S,
    FULL_TRAIN_LOSS,
    INTERRUPTED,
    LR,
    MACHINE_LOAD,
    OPTIMIZER_STATE_BYTES,
    PEAK_BYTES,
    PROCESS_S,
    RUNNING,
    STEP,
    TEST_ACCURACY,
    TEST_LOSS,
    TRAIN_ACCURACY,
    TRAIN_LOSS,
    TRAIN_LOSS_EMA,
    TRAIN_S,
    VALID_ACCURACY,
    VALID_LOSS,
    WARM_START_S,
    WEIGHT_SQ_NORM,
    phase_metric,
)
from optimizers.phases import PHASES, phase
from runners.build import BuiltRun, EvalSet
from runners.checkpoint import random_states, restore_random_states, save_checkpoint
from runners.clock import StepClock, timed_outside_training
from runners.closure import StepClosure
from runners.config_schema import Precision, TrainerConfig
from runners.distributed import SINGLE, World, rank_seed
from runners.evaluate import evaluate, has_batch_norm
from runners.interrupts import RunInterrupted, StopRequest
from runners.machine_load import load_1min, load_summary
from runners.memory import optimizer_state_bytes, peak_memory_bytes, reset_peak_memory
from runners.progress import ProgressBar
from runners.records import RunRecords

# trainer.precision -> the dtype of the forward pass's autocast (None: no autocast)
AUTOCAST_DTYPES: dict[Precision, torch.dtype | None] = {
    Precision.float32: None,
    Precision.bfloat16: torch.bfloat16,
}

log = logging.getLogger(__name__)


def weight_sq_norm(model: torch.nn.Module) -> float:
    """||w||^2 over every parameter (weights and biases), in float64."""
    with torch.no_grad():
        return float(sum(p.double().square().sum() for p in model.parameters()))


# best value of a metric = min or max over the run's evaluations
BEST_OF: dict[str, Callable[[float, float], float]] = {
    FULL_TRAIN_LOSS: min,
    TEST_LOSS: min,
    TRAIN_LOSS_EMA: min,
    TEST_ACCURACY: max,
    TRAIN_ACCURACY: max,
    VALID_LOSS: min,
    VALID_ACCURACY: max,
}


@dataclass
class Progress:
    """How far a run got: what a checkpoint restores besides model and optimizer."""

    epoch: int = 0  # completed epochs
    step: int = 0
    loss_ema: float | None = None
    eval_s: float = 0.0
    warm_start_s: float = 0.0
    metric_lines: int = 0
    best: dict[str, float] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    diverged_at_step: int | None = None
    load_samples: list[float] = field(default_factory=list)  # runners.machine_load


class WarmStartInterrupted(Exception):
    """A stop request arrived during the warm start: its statistics are partial."""


class Trainer:
    def __init__(
        self,
        built: BuiltRun,
        cfg: TrainerConfig,
        records: RunRecords,
        identity: dict[str, Any],
        sinks: list[Any] | None = None,
        stop: StopRequest | None = None,
        bar: ProgressBar | None = None,
        world: World = SINGLE,
        seed: int = 0,
    ) -> None:
        self.built, self.cfg, self.records = built, cfg, records
        self.identity = identity
        self.sinks = sinks or []
        self.stop = stop or StopRequest()
        self.bar = bar or ProgressBar(False, "", None, 0)
        self.clock = StepClock(built.device)
        self.autocast = AUTOCAST_DTYPES[Precision(cfg.precision)]
        self.progress = Progress()
        self.resumed = False
        self.world, self.seed = world, seed
        # data parallel: what the ranks agreed at the latest agreement point (_agree)
        self._agreed_signum: int | None = None
        self._agreed_time_spent = False

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        scheduler = self.built.scheduler
        state = {
            "model": self.built.model.state_dict(),
            "optimizer": self.built.optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "progress": asdict(self.progress),
            "clock": self.clock.state_dict(),
            "random": random_states(),
        }
        if self.world.distributed:  # a collective: every rank saves at the same points
            state["random_ranks"] = self.world.all_gather_object(random_states())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint; metric records written after it are dropped."""
        self.built.model.load_state_dict(state["model"])
        self.built.optimizer.load_state_dict(state["optimizer"])
        if self.built.scheduler is not None and state["scheduler"] is not None:
            self.built.scheduler.load_state_dict(state["scheduler"])
        self.progress = Progress(**state["progress"])
        self.clock.load_state_dict(state["clock"])
        ranks = state.get("random_ranks")
        if ranks is not None and len(ranks) == self.world.size:
            restore_random_states(ranks[self.world.rank])
        elif self.world.is_main:
            restore_random_states(state["random"])
        else:  # resumed on another number of ranks: a stream of its own from this step on
            torch.manual_seed(rank_seed(self.seed + self.progress.step, self.world.rank))
        self.records.truncate_metrics(self.progress.metric_lines)
        self.resumed = True

    def save_checkpoint(self) -> None:
        state = self.state_dict()  # on every rank (it gathers their random states)
        if self.world.is_main:
            save_checkpoint(self.records.checkpoint_path, state)

    @property
    def total_steps(self) -> int | None:
        """Steps of the epoch budget (None with a time budget only)."""
        if self.cfg.max_epochs is None:
            return None
        return self.cfg.max_epochs * self.built.batches.steps_per_epoch

    # ----------------------------------------------------------------------------- loop
    def train(self) -> str:
        """Train until the budget is spent; returns the final status."""
        reset_peak_memory(self.built.device)
        self._sample_load()
        self.write_summary(RUNNING)
        self._agree(time_spent=self._clock_spent())
        if not self.resumed:
            if not self._evaluate_and_log():
                return self._finish(DIVERGED)
            if self._warm_start():
                self.save_checkpoint()  # a stop in the first epoch never warm-starts again
        while not self._budget_spent():
            self._stop_if_requested()
            epoch_completed = self._train_epoch()
            if self.progress.diverged_at_step is not None:
                return self._finish(DIVERGED)
            if epoch_completed:
                self.progress.epoch += 1
                if self.built.scheduler is not None:
                    self.built.scheduler.step()
            elif self._stopping():
                continue  # stopped inside the epoch: checkpoint at this step, at the loop top
            last = self._budget_spent()
            evaluate_now = last or self.progress.epoch % self.cfg.eval_every_epochs == 0
            if evaluate_now and not self._evaluate_and_log():
                return self._finish(DIVERGED)
            if last or self.progress.epoch % self.cfg.checkpoint_every_epochs == 0:
                self.save_checkpoint()
                self.write_summary(RUNNING)
        return self._finish(COMPLETED)

    def _stopping(self) -> bool:
        """Whether a stop was requested: this process's flag, or in a data-parallel run what
        the ranks agreed at the latest agreement point (the flag may have been set since on
        one rank only)."""
        if not self.world.distributed:
            return self.stop.requested
        return self._agreed_signum is not None

    def _agree(self, time_spent: bool | None = None, nonfinite: bool = False) -> bool:
        """Data parallel: one all-reduce (max) of this rank's stop signal, time-spent flag and
        non-finite flag, so that every rank takes the same branch after it; returns whether a
        rank saw a non-finite loss. One process: nothing (its flags are read directly).
        `time_spent` None keeps the time-spent flag last agreed."""
        if not self.world.distributed:
            return nonfinite
        if time_spent is None:
            time_spent = self._agreed_time_spent
        signum, spent, bad = self.world.max_of(
            [self.stop.signum or 0, float(time_spent), float(nonfinite)]
        )
        if signum and self._agreed_signum is None:
            self._agreed_signum = int(signum)
            self.stop.adopt(int(signum))  # a rank that was not signalled exits alike
        self._agreed_time_spent = bool(spent)
        return bool(bad)

    def _stop_if_requested(self) -> None:
        """Between steps: on a stop request, checkpoint here and raise RunInterrupted."""
        self._agree()  # a signal that came during the evaluation or the checkpoint
        if not self._stopping():
            return
        self.save_checkpoint()
        self.write_summary(INTERRUPTED, signal=self.stop.name)
        raise RunInterrupted(
            self.stop,
            f"{self.stop.name} at step {self.progress.step}: checkpointed; "
            "rerun the same command to resume from this step",
        )

    def _budget_spent(self) -> bool:
        epochs_spent = (
            self.cfg.max_epochs is not None and self.progress.epoch >= self.cfg.max_epochs
        )
        return epochs_spent or self._time_spent()

    def _time_spent(self) -> bool:
        """Whether the time budget is spent: by this process's clock, or in a data-parallel
        run as the ranks agreed at the latest step (their clocks differ a little)."""
        if self.world.distributed:
            return self._agreed_time_spent
        return self._clock_spent()

    def _clock_spent(self) -> bool:
        return self.cfg.max_time_s is not None and self.clock.train_s >= self.cfg.max_time_s

    def _train_epoch(self) -> bool:
        """The epoch's remaining steps (all of them, unless the run resumed inside it); False
        when it stopped early (time budget, divergence or a stop request)."""
        built, batches = self.built, self.built.batches
        first = self.progress.step - self.progress.epoch * batches.steps_per_epoch
        epoch = None
        for index in range(first, batches.steps_per_epoch):
            with self.clock.step():
                with phase("data"):  # the epoch's order and augmentation draws, then a batch
                    if epoch is None:
                        epoch = batches.epoch(self.progress.epoch)
                    inputs, targets = epoch.batch(index)
                closure = StepClosure(built.model, built.likelihood, inputs, targets, self.autocast)
                loss = built.optimizer.step(closure)
            if loss is None:
                raise TypeError(
                    f"{type(built.optimizer).__name__}.step(closure) returned None; "
                    "it must return the closure's loss, as torch.optim does"
                )
            self.progress.step += 1
            value = float(loss)
            elsewhere = self._agree(self._clock_spent(), not math.isfinite(value))
            if not self._record_loss(value, diverged_elsewhere=elsewhere):
                return False
            self.bar.step(self._position()[EPOCH], self.progress.loss_ema, self.clock.train_s)
            if self._time_spent() or self._stopping():
                return False
        return True

    def _record_loss(self, loss: float, diverged_elsewhere: bool = False) -> bool:
        """Update the loss EMA and log every log_every_steps; False when the loss diverged
        (here, or on another rank of a data-parallel run)."""
        decay, ema = self.cfg.loss_ema_decay, self.progress.loss_ema
        self.progress.loss_ema = loss if ema is None else decay * ema + (1.0 - decay) * loss
        finite = math.isfinite(loss) and not diverged_elsewhere
        if not finite:
            self.progress.diverged_at_step = self.progress.step
            log.warning(
                "non-finite training loss %s at step %d: run diverged", loss, self.progress.step
            )
        if not finite or self.progress.step % self.cfg.log_every_steps == 0:
            self._log({**self._position(), TRAIN_LOSS: loss, **self._loss_ema_and_clock()})
        return finite

    def _warm_start(self) -> bool:
        """The optimizer's warm start, if it has one; True when it used any batch."""
        warm_start = getattr(self.built.optimizer, "warm_start", None)
        if warm_start is None:
            return False
        batches = self.built.batches
        count = self.cfg.warm_start_batches or batches.steps_per_epoch
        epoch = batches.epoch(-1)  # an order (and augmentation) of its own, not epoch 0's
        used = 0

        def closures() -> Iterator[StepClosure]:
            nonlocal used
            for index in range(count):
                self._agree()
                if self._stopping():
                    raise WarmStartInterrupted
                inputs, targets = epoch.batch(index % batches.steps_per_epoch)
                used += 1
                yield StepClosure(
                    self.built.model, self.built.likelihood, inputs, targets, self.autocast
                )

        model = self.built.model
        before = {name: value.clone() for name, value in model.state_dict().items()}
        totals = {"warm_start_s": self.progress.warm_start_s}
        self.bar.phase("warm start")
        try:
            with timed_outside_training(self.built.device, totals, "warm_start_s"):
                warm_start(closures())
        except WarmStartInterrupted:
            self.write_summary(INTERRUPTED, signal=self.stop.name)
            raise RunInterrupted(
                self.stop,
                f"{self.stop.name} during the warm start: no checkpoint yet; "
                "rerun the same command to start again from step 0",
            ) from None
        self.bar.phase(None)
        self.progress.warm_start_s = totals["warm_start_s"]
        if used:
            log.info(
                "warm start: %d batches at the initial weights in %.1f s (outside the clock)",
                used,
                self.progress.warm_start_s,
            )
        changed = [
            name
            for name, parameter in model.named_parameters()
            if not torch.equal(parameter.detach(), before[name])
        ]
        if changed:
            raise RuntimeError(
                f"{type(self.built.optimizer).__name__}.warm_start changed the weights of "
                f"{', '.join(changed)}; a warm start may only gather statistics"
            )
        # Its forward passes ran in training mode and moved BatchNorm's running statistics;
        # put them back, so that a warm start leaves the model exactly as other methods get it.
        model.load_state_dict(before)
        return used > 0

    def _evaluate_and_log(self) -> bool:
        """Evaluate outside the clock and log the epoch record; False when the loss is not
        finite (the run diverged)."""
        built = self.built
        totals = {"eval_s": self.progress.eval_s}
        # untrained BatchNorm statistics would make the first point meaningless (docstring)
        batch_statistics = self.progress.step == 0 and has_batch_norm(built.model)
        self.bar.phase("evaluation")
        with timed_outside_training(built.device, totals, "eval_s"):
            batch = self.cfg.eval_batch_size

            def evaluate_on(split: EvalSet) -> dict[str, float]:
                return evaluate(
                    built.model,
                    built.likelihood,
                    split,
                    batch,
                    batch_statistics,
                    self.autocast,
                    self.world,
                )

            train = evaluate_on(built.train_eval)
            held_out = {
                prefix: evaluate_on(split)
                for prefix, split in (("valid", built.valid_eval), ("test", built.test_eval))
                if split is not None
            }
        self.bar.phase(None)
        self.progress.eval_s = totals["eval_s"]
        self._sample_load()
        record: dict[str, Any] = {**self._position(), FULL_TRAIN_LOSS: train["loss"]}
        for prefix, values in held_out.items():
            record[f"{prefix}/loss"] = values["loss"]
            if "accuracy" in values:
                record[f"{prefix}/accuracy"] = values["accuracy"]
        if "accuracy" in train:
            record[TRAIN_ACCURACY] = train["accuracy"]
        record.update(self._loss_ema_and_clock())
        record[PROCESS_S] = self.clock.process_s
        record[EVAL_S] = self.progress.eval_s
        record[WARM_START_S] = self.progress.warm_start_s
        record[WEIGHT_SQ_NORM] = weight_sq_norm(built.model)
        record[PEAK_BYTES] = peak_memory_bytes(built.device)
        record[OPTIMIZER_STATE_BYTES] = optimizer_state_bytes(built.optimizer)
        for name in PHASES:
            record[phase_metric(name)] = self.clock.phase_s.get(name, 0.0)
        self._update_best(record)
        self.progress.final = record
        self._log(record)
        held_out_text = "".join(
            f" {key} {record[key]:.5g}"
            for key in (VALID_LOSS, VALID_ACCURACY, TEST_LOSS, TEST_ACCURACY)
            if key in record
        )
        log.info(
            "epoch %.2f step %d: train/full_loss %.5g%s time/train_s %.1f",
            record[EPOCH],
            record[STEP],
            record[FULL_TRAIN_LOSS],
            held_out_text,
            record[TRAIN_S],
        )
        if not math.isfinite(train["loss"]):
            self.progress.diverged_at_step = self.progress.step
            return False
        return True

    def _sample_load(self) -> None:
        value = load_1min()
        if value is not None:
            self.progress.load_samples.append(value)

    # ----------------------------------------------------------------------------- records
    def _position(self) -> dict[str, Any]:
        steps_per_epoch = self.built.batches.steps_per_epoch
        return {STEP: self.progress.step, EPOCH: self.progress.step / steps_per_epoch}

    def _loss_ema_and_clock(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if self.progress.loss_ema is not None:
            values[TRAIN_LOSS_EMA] = self.progress.loss_ema
        values[TRAIN_S] = self.clock.train_s
        values[LR] = self.built.optimizer.param_groups[0]["lr"]
        return values

    def _update_best(self, record: dict[str, Any]) -> None:
        for key, better in BEST_OF.items():
            value = record.get(key)
            if value is None or not math.isfinite(value):
                continue
            previous = self.progress.best.get(key)
            self.progress.best[key] = value if previous is None else better(previous, value)

    def _log(self, record: dict[str, Any]) -> None:
        self.records.append_metrics(record)
        self.progress.metric_lines += 1
        for sink in self.sinks:
            sink.log(record)

    def summary_fields(self, status: str) -> dict[str, Any]:
        steps = self.progress.step
        return {
            "status": status,
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "epochs": self.progress.epoch,
            "steps": steps,
            "steps_per_epoch": self.built.batches.steps_per_epoch,
            "diverged_at_step": self.progress.diverged_at_step,
            "final": self.progress.final,
            "best": self.progress.best,
            "time": {
                "train_s": self.clock.train_s,
                "process_s": self.clock.process_s,
                "eval_s": self.progress.eval_s,
                "warm_start_s": self.progress.warm_start_s,
                "per_step_s": self.clock.train_s / steps if steps else None,
                "phases_s": dict(self.clock.phase_s),
            },
            MACHINE_LOAD: load_summary(self.progress.load_samples),
        }

    def write_summary(self, status: str, **extra: Any) -> None:
        self.records.write_summary({**self.identity, **self.summary_fields(status), **extra})

    def _finish(self, status: str) -> str:
        self.write_summary(status)
        return status
