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

SIZES = [7, BLOCKED_GRAM_MIN_SIZE, BLOCKED_GRAM_MIN_SIZE + 3, 2 * BLOCKED_GRAM_MIN_SIZE + 5]


def with_ones(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)


@pytest.mark.parametrize("ones_column", [False, True])
@pytest.mark.parametrize("size", SIZES)  # the last one is split twice
def test_gram_running_average_matches_the_formula(size: int, ones_column: bool) -> None:
    generator = torch.Generator().manual_seed(size)
    rows = [torch.randn(40, size, generator=generator, dtype=torch.float64) for _ in range(3)]
    full = [with_ones(x) if ones_column else x for x in rows]
    average = accumulate_gram_average(None, rows[0], 0.0, 0.5, ones_column=ones_column)
    torch.testing.assert_close(average, 0.5 * full[0].T @ full[0])
    expected = 0.5 * full[0].T @ full[0]
    for x, x_full in zip(rows[1:], full[1:], strict=True):
        same = accumulate_gram_average(average, x, 0.9, 0.5, ones_column=ones_column)
        assert same is average  # in place
        expected = 0.9 * expected + 0.1 * 0.5 * x_full.T @ x_full
        torch.testing.assert_close(average, expected)
    torch.testing.assert_close(average, average.T)


@pytest.mark.parametrize("ones_column", [False, True])
def test_keep_zero_ignores_old_values_even_nan(ones_column: bool) -> None:
    rows = torch.randn(5, 1100, dtype=torch.float64)
    size = 1100 + int(ones_column)
    average = torch.full((size, size), float("nan"), dtype=torch.float64)
    full = with_ones(rows) if ones_column else rows
    fresh = accumulate_gram(average, rows, keep=0.0, add=2.0, ones_column=ones_column)
    torch.testing.assert_close(fresh, 2 * full.T @ full)


def test_update_average() -> None:
    average = update_average(None, torch.ones(3), 0.5)
    update_average(average, torch.zeros(3), 0.25)
    torch.testing.assert_close(average, torch.full((3,), 0.25))
    update_average(average, torch.full((3,), 4.0), 0.0)
    torch.testing.assert_close(average, torch.full((3,), 4.0))
