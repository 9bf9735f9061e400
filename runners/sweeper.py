"""What the sweeper of `-m` sweeps adds to Hydra's basic sweeper: one summary of every job
at the end. (Hydra loads sweepers from the `hydra_plugins` package only: the sweeper itself
is hydra_plugins/sobench_sweeper, selected by hydra/sweeper=sobench, the default.)

Each job's task returns a runners.run.RunOutcome instead of raising (runners.train.main),
so every job of the sweep runs whatever the others did, and a failure is one line when it
happens (runners.run) instead of a double traceback at the end. Once every job is done, on
any launcher (the outcomes come back from submitit's jobs too), this prints

    sweep: 6 jobs: 3 completed, 1 diverged, 1 skipped, 1 failed
      failed: runs/demo/3f9a0c1b2d: optimizer torch.optim.SGD: Invalid learning rate: -1.0

and exits with status 1 when a job failed or found its run directory busy.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence

from hydra.core.utils import JobReturn

from contract.records import COMPLETED, DIVERGED, FAILED, INTERRUPTED
from runners.run import BUSY, SKIPPED, RunOutcome

ORDER = (COMPLETED, DIVERGED, SKIPPED, INTERRUPTED, BUSY, FAILED)
NOT_DONE = (FAILED, BUSY)


def outcome_of(job: JobReturn) -> RunOutcome:
    """A job's RunOutcome (another task function's value counts as its status)."""
    value = job.return_value
    if isinstance(value, RunOutcome):
        return value
    return RunOutcome(str(value), str(job.working_dir or "?"))


def summary_lines(outcomes: Sequence[RunOutcome]) -> list[str]:
    """The sweep's counts by outcome, then one line per job that failed or was busy."""
    counts = Counter(outcome.status for outcome in outcomes)
    names = [*ORDER, *sorted(set(counts) - set(ORDER))]
    text = ", ".join(f"{counts[name]} {name}" for name in names if counts[name])
    lines = [f"sweep: {len(outcomes)} jobs: {text or 'none'}"]
    lines += [
        f"  {outcome.status}: {outcome.run_dir}: {outcome.reason}"
        for outcome in outcomes
        if outcome.status in NOT_DONE
    ]
    return lines


def report_sweep(batches: Sequence[Sequence[JobReturn]]) -> None:
    """Print the summary of a finished sweep; exit status 1 when a job failed or was busy."""
    outcomes = [outcome_of(job) for batch in batches for job in batch]
    print("\n".join(summary_lines(outcomes)), flush=True)
    if any(outcome.status in NOT_DONE for outcome in outcomes):
        sys.exit(1)
