"""Named phases of a training step: optimizers mark them, the runner measures them.

    with phase("statistics"):
        ...  # update curvature statistics

Each region is also a `torch.profiler.record_function`, so torch's profiler shows it. The
runner installs a listener (runners.clock.StepClock) for the timed steps; without one a phase
costs one record_function and nothing else, so optimizers never log or time themselves.

Standard names (the benchmark and the run records use them):
    data              fetching the mini-batch (runner)
    forward_backward  the closure's forward pass, loss and backward pass (runner)
    statistics        curvature statistics: factors, Gram matrices, gradient outer products
    inversion         inverses, inverse roots, decompositions
    preconditioning   applying the preconditioner to the (momentum) gradient
    communication     data parallel: the collectives between the ranks (optimizers.distributed:
                      gradient and statistics all-reduces, gathers, broadcasts of inverses);
                      never entered on one process
    update            the parameter update; also everything in a step not marked otherwise
Phases nest; each moment of a step is counted once, for the innermost phase.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from torch.profiler import record_function

PHASES = (
    "data",
    "forward_backward",
    "statistics",
    "inversion",
    "preconditioning",
    "communication",
    "update",
)


class PhaseListener(Protocol):
    def enter(self, name: str) -> None: ...

    def exit(self, name: str) -> None: ...


_listener: PhaseListener | None = None


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Mark a region of a training step as phase `name`."""
    with record_function(f"sobench.{name}"):
        listener = _listener
        if listener is None:
            yield
            return
        listener.enter(name)
        try:
            yield
        finally:
            listener.exit(name)


@contextmanager
def listening(listener: PhaseListener) -> Iterator[None]:
    """Send the phases marked inside this block to `listener`."""
    global _listener
    previous, _listener = _listener, listener
    try:
        yield
    finally:
        _listener = previous
