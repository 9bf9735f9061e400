"""contract.tuning: a trial's score, and Dodge et al.'s expected best after k trials checked
against brute-force enumeration of every draw."""

from __future__ import annotations

import itertools
import math

import pytest

from contract.tuning import Objective, best_trial, expected_best, objective_for


def brute_force(scores: list[float], k: int, maximize: bool) -> float:
    """E[best of k draws with replacement], by enumerating all N^k draws."""
    pick = max if maximize else min
    draws = list(itertools.product(scores, repeat=k))
    return sum(pick(draw) for draw in draws) / len(draws)


@pytest.mark.parametrize("maximize", [True, False])
@pytest.mark.parametrize("scores", [[3.0, 1.0, 2.0], [0.5, 0.5, 0.1, 0.9], [7.0]])
def test_expected_best_is_the_mean_best_over_every_draw(scores: list[float], maximize: bool):
    curve = expected_best(scores, 4, maximize)
    for k, value in enumerate(curve, start=1):
        assert value == pytest.approx(brute_force(scores, k, maximize), rel=1e-12)


def test_expected_best_moves_towards_the_best_score() -> None:
    curve = expected_best([4.0, 1.0, 3.0, 2.0], 8, maximize=False)
    assert curve[0] == pytest.approx(2.5)  # one trial: the mean
    assert all(a >= b for a, b in itertools.pairwise(curve))
    assert 1.0 < curve[-1] < 1.2


def test_a_test_metric_is_never_an_objective() -> None:
    with pytest.raises(ValueError, match="tuning never reads the test split"):
        Objective("test/loss", maximize=False)


def test_the_score_is_the_best_finite_validation_value() -> None:
    records = [
        {"step": 0, "valid/loss": 5.0, "test/loss": 0.1},
        {"step": 5, "valid/loss": 3.0},
        {"step": 9, "valid/loss": math.nan},  # the divergence
        {"step": 9, "train/loss": 0.0},
    ]
    assert objective_for(classifier=False).score(records) == 3.0
    assert objective_for(classifier=True).score(records) is None  # no valid/accuracy
    assert objective_for(classifier=True).metric == "valid/accuracy"


def test_a_diverged_trial_scores_the_untrained_network() -> None:
    records = [
        {"step": 0, "valid/loss": 5.0},
        {"step": 5, "valid/loss": 2.0},  # good, then it broke down
        {"step": 9, "valid/loss": math.nan},
    ]
    objective = objective_for(classifier=False)
    assert objective.trial_score(records, diverged=True) == 5.0
    assert objective.trial_score(records, diverged=False) == 2.0
    assert objective.trial_score([{"step": 0}], diverged=True) is None


def test_the_best_trial_never_diverged_unless_every_trial_did() -> None:
    # the diverged trial's untrained score (3.0) is lower than the completed ones'
    assert best_trial([5.0, 3.0, 4.0, None], [False, True, False, False], maximize=False) == 2
    assert best_trial([5.0, 3.0], [True, True], maximize=False) == 1
    assert best_trial([0.5, 0.9], [False, False], maximize=True) == 1
    assert best_trial([None, None], [False, True], maximize=False) is None
