"""The training clock: wall-clock seconds of training steps only, with per-phase shares.

Honest timing, as AlgoPerf's submission runner does it: the clock runs from the start to the
end of each training step, with the device synchronised at both ends on GPU, so asynchronous
CUDA work is counted in the step that launched it. Evaluation, checkpoints and warm start
happen between steps and are never counted. Process (CPU) time over the same regions is
recorded too, as the papers' reference code measured it.

Phases (optimizers.phases) are timed exclusively: at every phase boundary the time since the
previous boundary goes to the innermost open phase, or to "update" when none is open. On GPU
the boundaries are CUDA events read after the step's synchronisation, so measuring phases adds
no synchronisation inside a step.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from optimizers.phases import listening

RESIDUAL_PHASE = "update"


class StepClock:
    """Accumulates training seconds, process seconds and per-phase seconds over steps."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.train_s = 0.0
        self.process_s = 0.0
        self.phase_s: dict[str, float] = defaultdict(float)
        self._stack: list[str] = []
        self._boundaries: list[tuple[object, str]] = []  # (timestamp or event, phase ending)

    def _synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def _stamp(self) -> object:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _boundary(self) -> None:
        ending = self._stack[-1] if self._stack else RESIDUAL_PHASE
        self._boundaries.append((self._stamp(), ending))

    # PhaseListener
    def enter(self, name: str) -> None:
        self._boundary()
        self._stack.append(name)

    def exit(self, name: str) -> None:
        self._boundary()
        self._stack.pop()

    @contextmanager
    def step(self) -> Iterator[None]:
        """Time one training step; phases marked inside it are attributed."""
        self._synchronize()
        self._boundaries = [(self._stamp(), "")]
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        with listening(self):
            yield
        self._boundary()
        self._synchronize()
        self.train_s += time.perf_counter() - wall_start
        self.process_s += time.process_time() - cpu_start
        self._attribute_phases()

    def _attribute_phases(self) -> None:
        for (start, _), (end, ending) in itertools.pairwise(self._boundaries):
            seconds = (
                start.elapsed_time(end) / 1000.0  # type: ignore[attr-defined]  # CUDA events: ms
                if self.cuda
                else end - start  # type: ignore[operator]
            )
            self.phase_s[ending] += seconds
        self._boundaries = []

    def state_dict(self) -> dict[str, object]:
        return {"train_s": self.train_s, "process_s": self.process_s, "phase_s": dict(self.phase_s)}

    def load_state_dict(self, state: dict) -> None:
        self.train_s, self.process_s = state["train_s"], state["process_s"]
        self.phase_s = defaultdict(float, state["phase_s"])


@contextmanager
def timed_outside_training(
    device: torch.device, totals: dict[str, float], key: str
) -> Iterator[None]:
    """Wall-clock seconds of work outside the training clock (evaluation, warm start), added
    to totals[key]; synchronised on GPU like the training clock."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize()
    totals[key] = totals.get(key, 0.0) + time.perf_counter() - start
