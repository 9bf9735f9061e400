"""What one tuning command runs: for each optimizer (each combination of the command line's
comma lists), a study of K trials, then the best setting rerun with S seeds.

    trial  = the study's overrides + the sampled values (optimizer.<key>=<value>)
             + tuning={study, role: trial, trial: n} + trainer.evaluate_test=false
    final  = the study's overrides + the best trial's values
             + tuning={study, role: final, trials: K, sampler, space} + seed=s, s = 0..S-1

Both are ordinary runs of runners.train, launched by Hydra's launcher (local, or SLURM jobs
through submitit): the same records, run identity, resume and W&B logging as any run. A trial
never evaluates on the test split, and its score is its validation metric (contract.tuning);
the final runs evaluate on both, and are what the analysis compares, each with its tuning
budget beside it.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from contract.records import COMPLETED, DIVERGED, FAILED
from contract.tuning import FINAL, TRIAL, Objective, objective_for
from models.task import Task
from runners.build import locate_target
from runners.records import RunRecords
from runners.run import SKIPPED, RunOutcome
from runners.run_identity import experiment_name, identity_dict
from runners.tuning.space import SearchSpace, check_space, load_space
from runners.tuning.study import POLL_S, SAMPLERS, StudyHandle, TuningError, study_name

log = logging.getLogger("sobench")

Launch = Callable[[list[list[str]]], list[RunOutcome]]


@dataclass(frozen=True)
class TuneSettings:
    """The tuning command's own settings (conf/hydra/sweeper/tune.yaml, tune.* in runners.tune)."""

    trials: int = 8
    sampler: str = "qmc"
    space: str | None = None  # null: conf/search/<optimizer>.yaml
    storage: str | None = None  # null: SQLite in the study's directory; journal; a URL
    seeds: int = 3
    parallel: int = 1  # trials launched at once by this worker (a launcher's jobs)
    sampler_seed: int = 0


@dataclass
class StudyPlan:
    overrides: list[str]  # this study's command-line overrides
    optimizer: str
    name: str
    dir: Path
    space: SearchSpace
    objective: Objective
    budget: int


def study_overrides(arguments: Sequence[str]) -> list[list[str]]:
    """One override list per combination of the command line's sweeps (a,b,c and ranges)."""
    parsed = OverridesParser.create().parse_overrides(list(arguments))
    fixed: list[str] = []
    swept: list[list[str]] = []
    for override in parsed:
        if override.is_sweep_override():
            key = override.get_key_element()
            swept.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            fixed.append(override.input_line or "")
    return [fixed + list(combination) for combination in itertools.product(*swept)]


def _is_classifier(cfg: DictConfig) -> bool:
    return getattr(locate_target(cfg.model._target_, "model"), "TASK", None) == Task.classification


def plan_study(cfg: DictConfig, overrides: list[str], settings: TuneSettings) -> StudyPlan:
    """A study for one composed config, every check made: raises TuningError (or a
    SearchSpaceError, UserInputError) naming what to change, before any trial runs."""
    if settings.trials < 1:
        raise TuningError(f"tune.trials must be at least 1, got {settings.trials}")
    if settings.seeds < 0:
        raise TuningError(f"tune.seeds must be 0 or more, got {settings.seeds}")
    if settings.sampler not in SAMPLERS:
        raise TuningError(f"tune.sampler={settings.sampler!r}: choose from {', '.join(SAMPLERS)}")
    if cfg.dataset.validation_size <= 0:
        raise TuningError(
            "tuning ranks its trials on a validation split, never on the test split: set "
            "dataset.validation_size=N (N examples held out of the training split, e.g. 10000)"
        )
    choices = OmegaConf.select(cfg, "hydra.runtime.choices")
    experiment = experiment_name(choices)
    optimizer = str(choices.get("optimizer"))
    space = load_space(settings.space or optimizer)
    target = locate_target(cfg.optimizer._target_, "optimizer")
    check_space(space, cfg.optimizer, target)
    searched = set(space.grid if settings.sampler == "grid" else space.distributions)
    fixed_here = sorted(
        key
        for key in searched
        if any(item.lstrip("+").startswith(f"optimizer.{key}=") for item in overrides)
    )
    if fixed_here:
        raise TuningError(
            f"optimizer.{fixed_here[0]} is set on the command line but searched by "
            f"{space.path.name}: leave it out, or remove it from the search space"
        )
    budget = settings.trials
    if settings.sampler == "grid":
        size = 1
        for values in space.grid.values():
            size *= len(values)
        if budget > size:
            log.warning(
                "%s's grid has %d points: tune.trials=%d cut to %d", optimizer, size, budget, size
            )
            budget = size
    identity = identity_dict(cfg)
    identity.pop("tuning", None)
    for key in searched:
        identity.get("optimizer", {}).pop(key, None)
    identity["search"] = {"space": OmegaConf.to_container(OmegaConf.load(space.path))}
    name = study_name(experiment, optimizer, settings.sampler, identity)
    study_dir = Path(cfg.paths.runs_dir) / experiment / "studies" / name
    objective = objective_for(_is_classifier(cfg))
    return StudyPlan(overrides, optimizer, name, study_dir, space, objective, budget)


def _value(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def trial_overrides(plan: StudyPlan, number: int, params: dict[str, Any]) -> list[str]:
    values = [f"optimizer.{key}={_value(value)}" for key, value in params.items()]
    tuning = [f"tuning.study={plan.name}", f"tuning.role={TRIAL}", f"tuning.trial={number}"]
    return [*plan.overrides, *values, *tuning, "trainer.evaluate_test=false"]


def final_overrides(
    plan: StudyPlan, settings: TuneSettings, params: dict[str, Any], seed: int
) -> list[str]:
    values = [f"optimizer.{key}={_value(value)}" for key, value in params.items()]
    tuning = [
        f"tuning.study={plan.name}",
        f"tuning.role={FINAL}",
        f"tuning.trials={plan.budget}",
        f"tuning.sampler={settings.sampler}",
        f"tuning.space={plan.space.name}",
    ]
    return [*plan.overrides, *values, *tuning, f"seed={seed}"]


def trial_result(objective: Objective, outcome: RunOutcome) -> tuple[float | None, dict]:
    """A trial's score (None: no score, the trial failed) and what Optuna keeps of its run."""
    status = outcome.status
    if status == SKIPPED:  # already done before: its records say how it ended
        status = (RunRecords(Path(outcome.run_dir)).read_summary() or {}).get("status", FAILED)
    attrs: dict[str, Any] = {"status": status, "run_dir": outcome.run_dir}
    if outcome.reason:
        attrs["reason"] = outcome.reason
    if status not in (COMPLETED, DIVERGED):
        return None, attrs
    records = RunRecords(Path(outcome.run_dir)).read_metrics()
    return objective.trial_score(records, diverged=status == DIVERGED), attrs


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in params.items()
    )


def run_study(plan: StudyPlan, settings: TuneSettings, launch: Launch) -> list[str]:
    """Run this worker's share of the study's trials, then the final reruns; the summary."""
    handle = StudyHandle(
        plan.name,
        plan.dir,
        settings.storage,
        plan.objective,
        plan.space,
        settings.sampler,
        settings.sampler_seed,
    )
    metric = plan.objective.metric
    log.info(
        "tuning %s: study %s (%s), %d trials, by %s",
        plan.optimizer,
        plan.name,
        plan.dir,
        plan.budget,
        metric,
    )
    while True:
        claimed = handle.claim_trials(max(1, settings.parallel), plan.budget)
        if not claimed:
            if handle.running_elsewhere():  # other workers' last trials: they may be orphaned
                time.sleep(POLL_S)
                continue
            break
        outcomes = launch([trial_overrides(plan, c.number, c.params) for c in claimed])
        for trial, outcome in zip(claimed, outcomes, strict=True):
            score, attrs = trial_result(plan.objective, outcome)
            handle.finish(trial, score, attrs)
            resumed = " (resumed: its worker was killed)" if trial.resumed else ""
            shown = "no score" if score is None else f"{metric} {score:.5g}"
            log.info(
                "trial %d of %s: %s -> %s, %s%s",
                trial.number,
                plan.optimizer,
                _params_text(trial.params),
                shown,
                attrs["status"],
                resumed,
            )
    return _finals(plan, settings, handle, launch)


def _finals(
    plan: StudyPlan, settings: TuneSettings, handle: StudyHandle, launch: Launch
) -> list[str]:
    trials = handle.trials()
    states: dict[str, int] = {}
    for trial in trials:
        status = str(trial.user_attrs.get("status", trial.state.name.lower()))
        states[status] = states.get(status, 0) + 1
    counted = ", ".join(f"{count} {status}" for status, count in sorted(states.items()))
    head = f"tune {plan.optimizer}: study {plan.name}: {len(trials)} trials ({counted})"
    best = handle.best()
    if best is None:
        return [head, "  no trial has a score: no final runs"]
    lines = [
        head,
        f"  best: trial {best.number}, {_params_text(best.params)}: "
        f"{plan.objective.metric} {best.value:.5g}",
    ]
    if settings.seeds == 0:
        return lines
    done: list[str] = []
    with ExitStack() as held:
        mine = []
        for seed in range(settings.seeds):
            if held.enter_context(handle.final_seed(seed)):
                mine.append(seed)
            else:
                done.append(f"seed {seed}: run by another worker")
        jobs = [final_overrides(plan, settings, best.params, seed) for seed in mine]
        outcomes = launch(jobs) if jobs else []
    done += [
        f"seed {seed}: {outcome.status} ({outcome.run_dir})"
        for seed, outcome in zip(mine, outcomes, strict=True)
    ]
    lines.append("  final runs: " + "; ".join(done))
    return lines


def check_before_trials(plans: Sequence[StudyPlan]) -> None:
    """Two optimizers must not share a study (the same command line twice)."""
    names = [plan.name for plan in plans]
    if len(set(names)) != len(names):
        raise TuningError("the command line names the same study twice")
