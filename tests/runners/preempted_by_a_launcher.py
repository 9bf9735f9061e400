"""`python -m tests.runners.preempted_by_a_launcher MARKER overrides...`: runners.train in a
process where a launcher has its own handler for the preemption signal (SIGUSR2), as
submitit installs one in every SLURM job: it writes MARKER ("requeue the job") and exits -1,
as submitit's handler does."""

from __future__ import annotations

import runpy
import signal
import sys
from pathlib import Path
from types import FrameType


def launcher_handler(signum: int, frame: FrameType | None) -> None:
    Path(MARKER).write_text(signal.Signals(signum).name)
    sys.exit(-1)


if __name__ == "__main__":
    MARKER = sys.argv[1]
    signal.signal(signal.SIGUSR2, launcher_handler)
    sys.argv = ["runners.train", *sys.argv[2:]]
    runpy.run_module("runners.train", run_name="__main__")
