"""Running averages of Gram matrices against the plain formula, on both sides of the size at
which the blocked symmetric product takes over."""

from __future__ import annotations

import pytest
import torch

from optimizers.statistics import (
    BLOCKED_GRAM_MIN_SIZE,
    accumulate_gram,
    accumulate_gram_average,
    update_average,
)


@pytest.mark.parametrize("size", [7, BLOCKED_GRAM_MIN_SIZE, BLOCKED_GRAM_MIN_SIZE + 3])
def test_gram_running_average_matches_the_formula(size: int) -> None:
    generator = torch.Generator().manual_seed(size)
    rows = [torch.randn(40, size, generator=generator, dtype=torch.float64) for _ in range(3)]
    average = accumulate_gram_average(None, rows[0], decay=0.0, scale=0.5)
    torch.testing.assert_close(average, 0.5 * rows[0].T @ rows[0])
    expected = 0.5 * rows[0].T @ rows[0]
    for x in rows[1:]:
        same = accumulate_gram_average(average, x, decay=0.9, scale=0.5)
        assert same is average  # in place
        expected = 0.9 * expected + 0.1 * 0.5 * x.T @ x
        torch.testing.assert_close(average, expected)
    torch.testing.assert_close(average, average.T)


def test_keep_zero_ignores_old_values_even_nan() -> None:
    rows = torch.randn(5, 600, dtype=torch.float64)
    average = torch.full((600, 600), float("nan"), dtype=torch.float64)
    torch.testing.assert_close(accumulate_gram(average, rows, keep=0.0, add=2.0), 2 * rows.T @ rows)


def test_update_average() -> None:
    average = update_average(None, torch.ones(3), 0.5)
    update_average(average, torch.zeros(3), 0.25)
    torch.testing.assert_close(average, torch.full((3,), 0.25))
    update_average(average, torch.full((3,), 4.0), 0.0)
    torch.testing.assert_close(average, torch.full((3,), 4.0))
