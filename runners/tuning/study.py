"""One Optuna study: its storage, the trials its workers claim, and its best setting.

A study lives in <runs_dir>/<experiment>/studies/<name>/:

    study.db          the Optuna storage by default (SQLite); tune.storage=journal keeps a
                      journal file (study.journal) instead, any other value is a database URL
                      (e.g. postgresql://...) shared by workers on several machines
    study.lock        held for the moment a worker reads the trials and claims one
    trials/<n>.lock   held by the worker that runs trial n, for as long as it runs it

Claiming a trial (`claim_trials`), with study.lock held:
1. a trial Optuna records as running whose lock nobody holds is an orphan: the worker that ran
   it was killed. It is claimed again with its own number and parameters, so its run
   (the same config, hence the same run directory) resumes from its checkpoint, or restarts
   from step 0 when it had none;
2. otherwise, while the study has fewer than K trials, a new one is asked of the sampler.
So a killed and rerun tuning command loses no trial and runs none twice, and K workers on one
storage share its K trials. The locks are file locks (fcntl), as are the run directories'
(runners.run_lock): on a cluster, the runs directory must be on a file system that honours
them, which a shared runs directory must be anyway.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock, Timeout

from contract.records import DIVERGED
from contract.tuning import Objective, best_trial
from runners.tuning.space import SearchSpace

log = logging.getLogger(__name__)

SAMPLERS = ("qmc", "tpe", "grid")
POLL_S = 2.0  # how often a worker with nothing left to claim looks at the others' trials


class TuningError(ValueError):
    """A tuning command that cannot run as asked (said before any trial)."""


@dataclass
class Claimed:
    """A trial a worker holds: run it, then `StudyHandle.finish` it."""

    number: int
    params: dict[str, Any]
    resumed: bool  # an orphan of a killed worker
    lock: FileLock = field(repr=False)


def study_name(experiment: str, optimizer: str, sampler: str, identity: dict[str, Any]) -> str:
    """<experiment>-<optimizer>-<sampler>-<hash of the problem, budget and fixed settings>: a
    rerun of the same command finds its study; a change of budget or problem starts another."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    return f"{experiment}-{optimizer}-{sampler}-{digest.hexdigest()[:8]}"


def make_sampler(kind: str, space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    """Quasi-random (scrambled Halton, as AlgoPerf's external tuning), TPE, or the grid."""
    if kind == "qmc":
        return optuna.samplers.QMCSampler(
            qmc_type="halton", scramble=True, seed=seed, warn_independent_sampling=False
        )
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "grid":
        if not space.grid:
            raise TuningError(f"{space.path.name} has no `grid`: add one, or use tune.sampler=qmc")
        return optuna.samplers.GridSampler(space.grid, seed=seed)
    raise TuningError(f"tune.sampler={kind!r}: choose from {', '.join(SAMPLERS)}")


def make_storage(storage: str | None, study_dir: Path) -> optuna.storages.BaseStorage | str:
    if storage in (None, "sqlite"):
        return f"sqlite:///{study_dir / 'study.db'}"
    if storage == "journal":
        backend = optuna.storages.journal.JournalFileBackend(str(study_dir / "study.journal"))
        return optuna.storages.JournalStorage(backend)
    return storage


class StudyHandle:
    """A study opened (or created) in its directory, for one worker."""

    def __init__(
        self,
        name: str,
        study_dir: Path,
        storage: str | None,
        objective: Objective,
        space: SearchSpace,
        sampler: str,
        sampler_seed: int,
    ) -> None:
        self.name, self.dir, self.objective, self.space = name, study_dir, objective, space
        (study_dir / "trials").mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(study_dir / "study.lock")
        distributions = space.grid if sampler == "grid" else space.distributions
        self.distributions = (
            {
                key: optuna.distributions.CategoricalDistribution(values)
                for key, values in distributions.items()
            }
            if sampler == "grid"
            else distributions
        )
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with self._lock:
            self.study = optuna.create_study(
                study_name=name,
                storage=make_storage(storage, study_dir),
                sampler=make_sampler(sampler, space, sampler_seed),
                direction=objective.direction,
                load_if_exists=True,
            )

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self._lock:
            yield

    def _trial_lock(self, number: int) -> FileLock:
        return FileLock(self.dir / "trials" / f"{number}.lock")

    def claim_trials(self, count: int, budget: int) -> list[Claimed]:
        """Up to `count` trials for this worker: orphans first, then new ones while the study
        has fewer than `budget` trials."""
        claimed: list[Claimed] = []
        with self._lock:
            for trial in self.study.get_trials(deepcopy=False):
                if len(claimed) == count:
                    return claimed
                if trial.state != optuna.trial.TrialState.RUNNING:
                    continue
                lock = self._trial_lock(trial.number)
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    continue  # another worker runs it
                claimed.append(Claimed(trial.number, dict(trial.params), True, lock))
            trials = len(self.study.get_trials(deepcopy=False))
            while len(claimed) < count and trials < budget:
                trial = self.study.ask(fixed_distributions=self.distributions)
                trials += 1
                lock = self._trial_lock(trial.number)
                lock.acquire(timeout=0)
                claimed.append(Claimed(trial.number, dict(trial.params), False, lock))
        return claimed

    def finish(self, claimed: Claimed, score: float | None, attrs: dict[str, Any]) -> None:
        """Record a trial's score (None: it failed) and what its run said, then let it go."""
        with self._lock:
            trial_id = self.study._storage.get_trial_id_from_study_id_trial_number(
                self.study._study_id, claimed.number
            )
            for key, value in attrs.items():
                self.study._storage.set_trial_user_attr(trial_id, key, value)
            if score is None:
                self.study.tell(claimed.number, state=optuna.trial.TrialState.FAIL)
            else:
                self.study.tell(claimed.number, score)
        claimed.lock.release()

    def running_elsewhere(self) -> int:
        """Trials other live workers are running (0 when the study is done)."""
        with self._lock:
            return sum(
                trial.state == optuna.trial.TrialState.RUNNING
                for trial in self.study.get_trials(deepcopy=False)
            )

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        with self._lock:
            return self.study.get_trials(deepcopy=True)

    def best(self) -> optuna.trial.FrozenTrial | None:
        """The trial whose setting the final runs rerun (contract.tuning.best_trial)."""
        complete = [t for t in self.trials() if t.state == optuna.trial.TrialState.COMPLETE]
        diverged = [t.user_attrs.get("status") == DIVERGED for t in complete]
        index = best_trial([t.value for t in complete], diverged, self.objective.maximize)
        return None if index is None else complete[index]

    @contextmanager
    def final_seed(self, seed: int) -> Iterator[bool]:
        """Whether this worker runs the final rerun with `seed` (no other worker does now)."""
        lock = FileLock(self.dir / "trials" / f"final-{seed}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()
