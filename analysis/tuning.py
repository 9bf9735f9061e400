"""Tuning curves: how much tuning each method needs, from the trials of runners.tune.

    python -m analysis.tuning runs/demo --figure figures/tuning.png

Per problem, one row of two panels and one table:
- left: the expected best validation score after k trials, k = 1..K, per method (Dodge et
  al. 2019, contract.tuning.expected_best, over the empirical distribution of its K trials):
  a method whose curve starts high and falls late needs more tuning to be at its best;
- right: every trial's score against the method's main hyperparameter (the learning rate
  when it was searched), diverged trials marked x: how sensitive the method is to it;
- the table: each method's budget (trials, sampler), how its trials ended, its best trial and
  the expected best after 1 and after K trials, and its final reruns (the best setting with S
  seeds, runners.tune): their median test loss (autoencoders) or best test accuracy
  (classifiers) over the completed seeds. Test metrics appear for the final reruns only: the
  trials never evaluated on the test split.
A trial's score is contract.tuning's (the best validation value over its evaluations; a
diverged trial's first, the untrained network's), the one runners.tune ranked it by. Reads run
directories (the trials' W&B copies carry the same records).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from analysis.load import find_run_dirs, read_run_dir
from analysis.style import colour, display_name, metric_label, problem_title, sort_key
from analysis.tables import to_markdown
from contract.records import COMPLETED, DIVERGED, TEST_ACCURACY, TEST_LOSS, VALID_ACCURACY
from contract.tuning import FINAL, TRIAL, Objective, best_trial, expected_best, objective_for

MAIN_HYPERPARAMETERS = ("lr",)  # the scatter's axis when searched; else the first that varies


@dataclass(frozen=True)
class TuningRun:
    experiment: str
    method: str
    study: str
    role: str
    trial: int | None
    seed: int
    status: str
    optimizer: dict[str, Any]
    records: list[dict]
    summary: dict[str, Any]
    tuning: dict[str, Any]


def read_tuning_runs(root: Path | str) -> list[TuningRun]:
    """Every trial and final run under `root` (runs of no study are left out)."""
    found = []
    for run_dir in find_run_dirs(root):
        summary, config, records = read_run_dir(run_dir)
        tuning = (config or {}).get("tuning") or {}
        if tuning.get("role") not in (TRIAL, FINAL):
            continue
        found.append(
            TuningRun(
                experiment=str(summary.get("experiment")),
                method=str(summary.get("optimizer")),
                study=str(tuning["study"]),
                role=str(tuning["role"]),
                trial=tuning.get("trial"),
                seed=int(summary.get("seed") or 0),
                status=str(summary.get("status")),
                optimizer=dict((config or {}).get("optimizer") or {}),
                records=records,
                summary=summary,
                tuning=tuning,
            )
        )
    return found


def _objective(runs: list[TuningRun]) -> Objective:
    classifier = any(VALID_ACCURACY in record for run in runs for record in run.records)
    return objective_for(classifier)


def searched_keys(trials: list[TuningRun]) -> list[str]:
    """The optimizer arguments whose values differ between the trials (the searched ones),
    the main hyperparameter first."""
    keys = {key for run in trials for key in run.optimizer}
    varying = [key for key in keys if len({str(run.optimizer.get(key)) for run in trials}) > 1]
    return sorted(varying, key=lambda key: (key not in MAIN_HYPERPARAMETERS, key))


def setting_text(optimizer: dict[str, Any], keys: list[str]) -> str:
    """'lr=0.00443, damping=0.3': the searched values of a trial."""
    values = {key: optimizer.get(key) for key in keys}
    return ", ".join(
        f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in values.items()
    )


@dataclass(frozen=True)
class Study:
    """One study's trials and final runs, scored."""

    experiment: str
    method: str
    name: str
    objective: Objective
    trials: list[TuningRun]
    scores: list[float | None]  # per trial; None: no score (failed)
    finals: list[TuningRun]

    @property
    def scored(self) -> list[float]:
        return [score for score in self.scores if score is not None]

    @property
    def best_index(self) -> int | None:
        """The trial runners.tune reran (contract.tuning.best_trial)."""
        diverged = [run.status == DIVERGED for run in self.trials]
        return best_trial(self.scores, diverged, self.objective.maximize)

    def curve(self) -> list[float]:
        return expected_best(self.scored, len(self.trials), self.objective.maximize)


def studies(runs: list[TuningRun]) -> list[Study]:
    by_study: dict[str, list[TuningRun]] = {}
    for run in runs:
        by_study.setdefault(run.study, []).append(run)
    found = []
    for name, members in by_study.items():
        trials = sorted((r for r in members if r.role == TRIAL), key=lambda r: r.trial or 0)
        if not trials:
            continue
        objective = _objective(trials)
        scores = [
            objective.trial_score(run.records, run.status == DIVERGED)
            if run.status in (COMPLETED, DIVERGED)
            else None
            for run in trials
        ]
        finals = sorted((r for r in members if r.role == FINAL), key=lambda r: r.seed)
        found.append(
            Study(trials[0].experiment, trials[0].method, name, objective, trials, scores, finals)
        )
    return sorted(found, key=lambda s: (s.experiment, sort_key(s.method), s.name))


def _final_value(study: Study) -> tuple[str, float | None]:
    completed = [run for run in study.finals if run.status == COMPLETED]
    if study.objective.maximize:
        values = [(run.summary.get("best") or {}).get(TEST_ACCURACY) for run in completed]
        name, scale = "best test accuracy (%)", 100.0
    else:
        values = [(run.summary.get("final") or {}).get(TEST_LOSS) for run in completed]
        name, scale = "final test loss", 1.0
    values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return name, (float(np.median(values)) * scale if values else None)


def study_table(found: list[Study], experiment: str) -> pd.DataFrame:
    rows = []
    for study in (s for s in found if s.experiment == experiment):
        curve = study.curve() if study.scored else []
        statuses = pd.Series([run.status for run in study.trials]).value_counts()
        best_index = study.best_index
        keys = searched_keys(study.trials)
        best_setting = (
            "none" if best_index is None else setting_text(study.trials[best_index].optimizer, keys)
        )
        final_name, final_value = _final_value(study)
        sampler = study.finals[0].tuning.get("sampler") if study.finals else None
        rows.append(
            {
                "method": display_name(study.method),
                "trials": len(study.trials),
                "sampler": sampler or "?",
                "ended": ", ".join(f"{count} {status}" for status, count in statuses.items()),
                "best setting": best_setting,
                f"best {study.objective.metric}": study.scores[best_index]
                if best_index is not None
                else None,
                "E[best] after 1": curve[0] if curve else None,
                f"E[best] after {len(study.trials)}": curve[-1] if curve else None,
                "final seeds": sum(run.status == COMPLETED for run in study.finals),
                final_name: final_value,
            }
        )
    return pd.DataFrame(rows).set_index("method") if rows else pd.DataFrame()


def tuning_figure(found: list[Study]) -> plt.Figure | None:
    experiments = sorted({study.experiment for study in found})
    if not experiments:
        return None
    figure, axes = plt.subplots(
        len(experiments), 2, figsize=(11, 4 * len(experiments)), squeeze=False
    )
    for row, experiment in enumerate(experiments):
        curve_axis, scatter_axis = axes[row]
        members = [s for s in found if s.experiment == experiment]
        metric = members[0].objective.metric
        main_keys = set()
        legend: list[Line2D] = []
        for study in members:
            color = colour(study.method)
            label = f"{display_name(study.method)} ({len(study.trials)} trials)"
            if study.scored:
                curve = study.curve()
                curve_axis.plot(
                    range(1, len(curve) + 1), curve, marker="o", ms=3, color=color, label=label
                )
            keys = searched_keys(study.trials)
            if not keys:
                continue
            main = keys[0]
            main_keys.add(main)
            for run, score in zip(study.trials, study.scores, strict=True):
                value = run.optimizer.get(main)
                if score is None or not isinstance(value, (int, float)):
                    continue
                marker = "x" if run.status == DIVERGED else "o"
                scatter_axis.scatter(value, score, color=color, marker=marker, s=30)
            legend.append(
                Line2D(
                    [], [], color=color, marker="o", linestyle="", label=display_name(study.method)
                )
            )
        curve_axis.set_xlabel("trials k")
        curve_axis.set_ylabel(f"expected best {metric_label(metric)}")
        curve_axis.set_title(f"{problem_title(experiment)}: expected best after k trials")
        curve_axis.legend(fontsize=8)
        scatter_axis.set_xscale("log")
        scatter_axis.set_xlabel(" / ".join(sorted(main_keys)) or "main hyperparameter")
        scatter_axis.set_ylabel(f"trial's score, {metric_label(metric)}")
        scatter_axis.set_title("each trial (x: diverged, scored at its untrained value)")
        legend.append(Line2D([], [], color="black", marker="x", linestyle="", label="diverged"))
        scatter_axis.legend(handles=legend, fontsize=8)
        if not members[0].objective.maximize:
            for axis in (curve_axis, scatter_axis):
                axis.set_yscale("log")
    figure.tight_layout()
    return figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.tuning", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("runs", help="a folder of run directories (e.g. runs/demo)")
    parser.add_argument("--figure", type=Path, help="write the tuning figure here (.png, .pdf)")
    args = parser.parse_args(argv)
    if not Path(args.runs).is_dir():
        print(f"no such folder: {args.runs}", file=sys.stderr)
        return 1
    found = studies(read_tuning_runs(args.runs))
    if not found:
        print(
            f"no tuning trials in {args.runs}: run `python -m runners.tune ...` first",
            file=sys.stderr,
        )
        return 1
    for experiment in sorted({s.experiment for s in found}):
        table = study_table(found, experiment)
        print(f"## {experiment}: tuning\n\n{to_markdown(table)}\n")
    print(
        "Scores: each trial's best validation value over its evaluations (contract.tuning); "
        "E[best] after k: Dodge et al. 2019's expected best of k trials."
    )
    if args.figure:
        figure = tuning_figure(found)
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.figure, dpi=120)
        print(f"\nfigure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
