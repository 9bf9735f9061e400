"""What a tuning trial's score is, and the expected best score after k trials.

runners.tune ranks its trials by these scores and analysis.tuning draws the tuning curves from
the same records, so both read a trial the same way:

- The score is the best value over the trial's evaluations of a validation metric: the lowest
  `valid/loss` for autoencoders (the validation counterpart of sobench's lowest training loss),
  the highest `valid/accuracy` for classifiers. An objective on any other split is refused:
  tuning never reads the test split.
- A trial that diverged scores its first evaluation, the untrained network's (step 0): its
  setting gives nothing better than not training, however well it did before it broke down.
  runners.tune never reruns a diverged trial's setting as the best one unless every trial
  diverged.
- Expected best after k trials (Dodge et al. 2019, "Show your work", eq. 1): with the empirical
  distribution of the N trials' scores v_1..v_N, k trials drawn from it have
      E[max_k] = sum_v v (F(v)^k - F(v^-)^k),   F(v) = #{i : v_i <= v} / N,
  and for a minimised score the same with the order reversed. It is exact for random search
  (quasi-random too, up to its stratification) and a reading aid for TPE.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby

from contract.records import VALID_ACCURACY, VALID_LOSS

TRIAL = "trial"  # tuning.role of a trial: ranked on the validation split, never compared
FINAL = "final"  # tuning.role of a rerun of a study's best setting: what comparisons read
ROLES = (TRIAL, FINAL)
VALIDATION_PREFIX = "valid/"


@dataclass(frozen=True)
class Objective:
    """A validation metric and its direction."""

    metric: str
    maximize: bool

    def __post_init__(self) -> None:
        if not self.metric.startswith(VALIDATION_PREFIX):
            raise ValueError(
                f"a tuning objective must be a validation metric ({VALIDATION_PREFIX}...), got "
                f"{self.metric!r}: tuning never reads the test split"
            )

    @property
    def direction(self) -> str:
        return "maximize" if self.maximize else "minimize"

    def score(self, records: Iterable[dict]) -> float | None:
        """The best finite value of the metric over the records, None when there is none."""
        values = [
            float(record[self.metric])
            for record in records
            if isinstance(record.get(self.metric), (int, float))
            and math.isfinite(record[self.metric])
        ]
        if not values:
            return None
        return max(values) if self.maximize else min(values)

    def trial_score(self, records: list[dict], diverged: bool) -> float | None:
        """A trial's score: the best value over its evaluations, or for a diverged trial its
        first (step 0) value."""
        if not diverged:
            return self.score(records)
        first = next((record for record in records if self.metric in record), None)
        return None if first is None else self.score([first])


def objective_for(classifier: bool) -> Objective:
    """sobench's tuning objective for a problem: validation accuracy or validation loss."""
    return Objective(VALID_ACCURACY, True) if classifier else Objective(VALID_LOSS, False)


def expected_best(scores: Sequence[float], k_max: int, maximize: bool) -> list[float]:
    """E[best of k trials], k = 1..k_max, under the empirical distribution of `scores`
    (Dodge et al. 2019; see the module docstring)."""
    if not scores:
        raise ValueError("expected_best needs at least one score")
    n = len(scores)
    # from worst to best, so that F(v) = P(a draw is no better than v); ties share one v
    counts = [
        (value, len(list(ties))) for value, ties in groupby(sorted(scores, reverse=not maximize))
    ]
    curve = []
    for k in range(1, k_max + 1):
        total, below = 0.0, 0
        for value, count in counts:
            # P(best of k = v) = F(v)^k - F(v^-)^k
            total += value * (((below + count) / n) ** k - (below / n) ** k)
            below += count
        curve.append(total)
    return curve


def best_trial(
    scores: Sequence[float | None], diverged: Sequence[bool], maximize: bool
) -> int | None:
    """The index of the best trial: the best score among the trials that did not diverge,
    among the diverged ones only when every scored trial diverged; None when none has a score.
    runners.tune reruns this trial; analysis.tuning reports it."""
    scored = [i for i, score in enumerate(scores) if score is not None]
    pool = [i for i in scored if not diverged[i]] or scored
    if not pool:
        return None
    pick = max if maximize else min
    return pick(pool, key=lambda i: scores[i])
