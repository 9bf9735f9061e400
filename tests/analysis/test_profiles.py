"""Dolan-Moré performance profiles against a direct count over problems, written here
independently of analysis.profiles."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.profiles import performance_profile, performance_ratios


def profile_by_counting(costs: dict[str, dict[str, float]], tau: float) -> dict[str, float]:
    """rho_s(tau) = |{p : t[p,s] <= tau * min_s' t[p,s']}| / |P|, misses (inf, absent)
    never counting."""
    methods = sorted({m for row in costs.values() for m in row})
    counts = dict.fromkeys(methods, 0)
    for row in costs.values():
        best = min(row.values())
        for method in methods:
            t = row.get(method, math.inf)
            if math.isfinite(t) and t <= tau * best:
                counts[method] += 1
    return {method: count / len(costs) for method, count in counts.items()}


def test_profile_matches_a_direct_count_on_random_costs() -> None:
    rng = np.random.default_rng(7)
    methods = ["sgd", "adam", "kfac", "tnt"]
    costs = {}
    for p in range(25):
        row = {m: float(rng.uniform(1, 10)) for m in methods}
        for m in methods:
            if rng.uniform() < 0.2:
                row[m] = math.inf  # missed the target
        if p % 7 == 0:
            del row["kfac"]  # not run on this problem
        costs[f"p{p}"] = row
    taus = np.array([1.0, 1.1, 1.5, 2.0, 2.5, 3.0, 4.0])
    profile = performance_profile(pd.DataFrame(costs).T, taus)
    for tau in taus:
        expected = profile_by_counting(costs, tau)
        for method in methods:
            assert profile.loc[tau, method] == pytest.approx(expected[method]), (tau, method)


def test_ratios_and_profile_on_the_known_sweep_numbers() -> None:
    # times to target of tests/analysis/sweeps.py: (AE, CNN)
    costs = pd.DataFrame(
        {"sgd": [4.5, 20.0], "tnt": [6.0, 60.0], "kfac": [math.inf, np.nan], "adam": [4.5, np.nan]},
        index=["ae", "cnn"],
    )
    ratios = performance_ratios(costs)
    assert ratios.loc["ae"].tolist() == [1.0, 6.0 / 4.5, math.inf, 1.0]
    assert ratios.loc["cnn"].tolist() == [1.0, 3.0, math.inf, math.inf]
    profile = performance_profile(costs, np.array([1.0, 1.5, 3.0, 4.0]))
    assert profile["sgd"].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert profile["tnt"].tolist() == [0.0, 0.5, 1.0, 1.0]
    assert profile["adam"].tolist() == [0.5, 0.5, 0.5, 0.5]
    assert profile["kfac"].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_problem_nobody_solved_and_targets_met_at_once() -> None:
    costs = pd.DataFrame({"a": [math.inf, 0.0], "b": [math.inf, 0.0]}, index=["hard", "easy"])
    ratios = performance_ratios(costs)
    assert ratios.loc["hard"].tolist() == [math.inf, math.inf]
    assert ratios.loc["easy"].tolist() == [1.0, 1.0]  # a tie at 0, not 0 / 0
    profile = performance_profile(costs)
    assert profile.index[0] == 1.0 and profile.index[-1] == 4.0
    assert set(profile["a"]) == {0.5}
