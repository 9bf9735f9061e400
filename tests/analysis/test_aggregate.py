"""Seed aggregation: median and band over seeds, aligned on epochs and on training time,
against values worked out by hand (and, for the bootstrap band, against the exact
distribution of a resampled median)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.aggregate import seed_band

METRIC = "train/full_loss"


def frame(curves: dict[str, tuple[list[float], list[float], list[float]]]) -> pd.DataFrame:
    """run_id -> (epochs, seconds, values) as metric rows."""
    rows = [
        {"run_id": run_id, "epoch": e, "time/train_s": t, METRIC: v}
        for run_id, (epochs, seconds, values) in curves.items()
        for e, t, v in zip(epochs, seconds, values, strict=True)
    ]
    return pd.DataFrame(rows)


def test_epochs_median_and_min_max_up_to_the_shortest_seed() -> None:
    metrics = frame(
        {
            "a": ([0, 1, 2], [0, 1, 2], [9, 1, 0.5]),
            "b": ([0, 1, 2, 3], [0, 2, 4, 6], [9, 2, 1.0, 0.1]),
            "c": ([0, 1, 2, 3], [0, 3, 6, 9], [9, 10, 4.0, 0.2]),
        }
    )
    band = seed_band(metrics, METRIC, "epoch", "minmax")
    assert list(band["x"]) == [0, 1, 2]  # epoch 3: not every seed got there
    assert list(band["median"]) == [9, 2, 1.0]
    assert list(band["low"]) == [9, 1, 0.5]
    assert list(band["high"]) == [9, 10, 4.0]
    assert set(band["seeds"]) == {3}


def test_time_axis_interpolates_each_seed_between_its_own_evaluations() -> None:
    metrics = frame(
        {
            "a": ([0, 1, 2], [0.0, 1.0, 2.0], [10, 6, 4]),
            "b": ([0, 1, 2], [0.0, 1.5, 3.0], [10, 7, 1]),
        }
    )
    band = seed_band(metrics, METRIC, "time", "minmax")
    # a at 1.5 s: halfway from 6 (1 s) to 4 (2 s); b at 1 s: 1/1.5 of the way from 10 to 7;
    # b at 2 s: 0.5/1.5 of the way from 7 (1.5 s) to 1 (3 s)
    a = [10, 6, 5, 4]
    b = [10, 10 - 3 * (1 / 1.5), 7, 7 - 6 * (0.5 / 1.5)]
    assert list(band["x"]) == [0, 1, 1.5, 2]  # b's 3 s is past a's last evaluation
    assert list(band["median"]) == pytest.approx([(x + y) / 2 for x, y in zip(a, b, strict=True)])
    assert list(band["low"]) == pytest.approx(np.minimum(a, b))
    assert list(band["high"]) == pytest.approx(np.maximum(a, b))


def test_bootstrap_band_is_the_interval_of_the_resampled_median() -> None:
    seeds = 11
    values = np.arange(1.0, seeds + 1)
    metrics = frame({f"s{i}": ([0, 1], [0, 1], [20.0, v]) for i, v in enumerate(values)})
    band = seed_band(metrics, METRIC, "epoch", "bootstrap").set_index("x")
    # exact law of the median of 11 draws with replacement from {1..11}: it is <= k when
    # at least 6 draws are <= k, so P(median <= k) = P(Binomial(11, k/11) >= 6)
    cdf = {k: stats.binom.sf(5, seeds, k / seeds) for k in range(1, seeds + 1)}
    low = min(k for k in cdf if cdf[k] >= 0.025)
    high = min(k for k in cdf if cdf[k] >= 0.975)
    assert (low, high) == (3, 9)  # narrower than min-max (1, 11)
    assert band.loc[1, "low"] == low and band.loc[1, "high"] == high
    assert band.loc[1, "median"] == 6
    assert band.loc[0, "low"] == band.loc[0, "high"] == 20.0  # every seed agrees


def test_one_seed_collapses_both_bands_onto_its_curve() -> None:
    metrics = frame({"a": ([0, 1], [0, 1], [5, 3])})
    for kind in ("minmax", "bootstrap"):
        band = seed_band(metrics, METRIC, "epoch", kind)
        assert list(band["low"]) == list(band["median"]) == list(band["high"]) == [5, 3]


def test_unknown_band_and_missing_metric() -> None:
    metrics = frame({"a": ([0, 1], [0, 1], [5, 3])})
    with pytest.raises(ValueError, match="minmax, bootstrap"):
        seed_band(metrics, METRIC, "epoch", "sd")
    assert seed_band(metrics, "test/error", "epoch").empty
