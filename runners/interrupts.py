"""Stopping on request: SIGTERM (what SLURM sends at preemption and at the time limit),
SIGINT (Ctrl-C) and, where a launcher installed a handler for it, submitit's preemption
signal (SIGUSR2 by default).

While a run trains, these signals only set a flag; the trainer looks at it between steps
(never inside one, so the optimizer's state is never half-updated), saves a checkpoint at
that step, records the run as `interrupted` and raises RunInterrupted, which the entry point
turns into one line and exit status 128 + the signal (143 for SIGTERM, 130 for Ctrl-C). A
rerun of the same command resumes at that step. A second Ctrl-C while the first is being
handled stops at once (the run then resumes from its last checkpoint).

Where a launcher (submitit) had its own handler for a signal, that handler runs after the
checkpoint is written, so that it can requeue the job as it would have.

A data-parallel run (runners.distributed) must stop every rank at the same step: a rank that
stopped alone would leave the others waiting in the next collective. torchrun forwards its
SIGTERM to every rank and SLURM signals every task, but not at the same step, and a user may
signal one rank only. So the flag is never acted on alone: the trainer all-reduces (max) each
rank's signal number at every step boundary (runners.trainer), every rank adopts the result
(`StopRequest.adopt`), rank 0 checkpoints at that step, and every rank raises RunInterrupted
and exits with the same status. A rank blocked in a collective when signalled only sets the
flag (Python runs the handler when the collective returns), so it reaches the boundary too.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["RunInterrupted", "StopRequest", "stop_on_signals"]

SUBMITIT_PREEMPTION_SIGNAL = signal.SIGUSR2


class RunInterrupted(BaseException):
    """The run stopped on a signal (after checkpointing, where it could). A BaseException,
    like KeyboardInterrupt, so that a sweep stops too instead of starting its next job."""

    def __init__(self, request: StopRequest, message: str) -> None:
        super().__init__(message)
        self.request = request
        self.exit_status = 128 + (request.signum or 0)


class StopRequest:
    """The flag the signal handlers set, and the handlers they replaced."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        self.signum = signum

    def adopt(self, signum: int) -> None:
        """Stop as if `signum` had arrived here: another rank of a data-parallel run got it
        (a signal of this process's own, if any, is kept)."""
        if self.signum is None:
            self.signum = signum

    def pass_on(self) -> None:
        """Run the handler a launcher had installed for the signal that stopped the run
        (submitit requeues the job there), if it was one."""
        handler = self.previous.get(self.signum) if self.signum is not None else None
        if callable(handler) and handler not in (signal.default_int_handler,):
            handler(self.signum, None)


def _signals() -> list[int]:
    signals = [signal.SIGTERM, signal.SIGINT]
    if callable(signal.getsignal(SUBMITIT_PREEMPTION_SIGNAL)):  # a launcher listens to it
        signals.append(SUBMITIT_PREEMPTION_SIGNAL)
    return signals


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turn the stop signals into a StopRequest for the duration of the block (in the main
    thread only: Python delivers signals there; elsewhere nothing is installed)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    handler: Callable[[int, FrameType | None], None] = request._handle
    for signum in _signals():
        request.previous[signum] = signal.signal(signum, handler)
    try:
        yield request
    finally:
        for signum, previous in request.previous.items():
            signal.signal(signum, previous)
