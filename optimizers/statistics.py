"""Running averages of curvature statistics, S <- decay*S + (1-decay)*S_hat.

decay = 0 (or no S yet) sets S = S_hat. Gram-matrix estimates are fused into in-place matrix
products (torch.addmm), so refreshing a factor makes no temporary of its size:

    accumulate_gram(S, X, keep, add)  S <- keep*S + add*X^T X

X^T X is symmetric, so for large factors only its lower blocks are multiplied out and the
upper block is mirrored: with X = [X_1 | X_2], the products X_1^T X_1, X_2^T X_1 and
X_2^T X_2 are 3/4 of the full product's work, and the diagonal blocks are split again while
they are large: two levels for a 1000-wide factor, 5/8 of the full product (the floor,
runners.bench.floors, counts 1/2).

    accumulate_gram(S, X, keep, add, ones_column=True)   the same for [X | 1]

is the Gram of the rows with a column of ones appended (KFAC's and K-BFGS's [a; 1]) without
forming that copy of X: X^T X by the blocked products, X^T 1 as the column sums, and 1^T 1 =
the number of rows.
"""

from __future__ import annotations

import torch
from torch import Tensor

from optimizers.precision import MatmulPrecision, gram

# Below this size the three smaller products cost more than the quarter of work they save
# (measured on a 2-core Xeon at 1000 rows: a 1001-wide Gram in 0.78 of the full product's time
# when split down to blocks of ~250, 0.84 when split once, 0.86 when split down to ~125).
BLOCKED_GRAM_MIN_SIZE = 512


def update_average(average: Tensor | None, estimate: Tensor, decay: float) -> Tensor:
    """decay*average + (1-decay)*estimate, in place when `average` exists."""
    if average is None:
        return estimate.clone()
    if decay == 0.0:
        return average.copy_(estimate)
    return average.mul_(decay).add_(estimate, alpha=1.0 - decay)


def accumulate_gram(
    average: Tensor | None,
    rows: Tensor,
    keep: float,
    add: float,
    precision: MatmulPrecision = MatmulPrecision.full,
    ones_column: bool = False,
) -> Tensor:
    """keep*average + add*rows^T rows for `rows` of shape (M, d), in place when `average`
    exists (keep = 0 ignores its old values, NaN included); with `ones_column`, of [rows | 1]
    ((d+1) x (d+1)). With bfloat16 `precision` the product has bfloat16 operands
    (optimizers.precision) and the average stays in rows' dtype."""
    if precision != MatmulPrecision.full:
        if ones_column:
            rows = with_ones_column(rows)
        estimate = gram(rows, precision)
        if average is None or keep == 0.0:
            return estimate.mul_(add) if average is None else average.copy_(estimate).mul_(add)
        return average.mul_(keep).add_(estimate, alpha=add)
    size = rows.shape[1]
    if average is None:
        total = size + int(ones_column)
        average, keep = rows.new_empty(total, total), 0.0
    _blocked_gram(average[:size, :size], rows, keep, add)
    if ones_column:
        # [X | 1]^T [X | 1] = [[X^T X, X^T 1], [1^T X, M]]
        sums = average[size, :size]
        if keep == 0.0:
            torch.sum(rows, dim=0, out=sums)
            sums.mul_(add)
        else:
            sums.mul_(keep).add_(rows.sum(dim=0), alpha=add)
        average[:size, size].copy_(sums)
        corner = average[size, size]  # a 0-dim view: no host read
        if keep == 0.0:
            corner.fill_(add * rows.shape[0])
        else:
            corner.mul_(keep).add_(add * rows.shape[0])
    return average


def _blocked_gram(average: Tensor, rows: Tensor, keep: float, add: float) -> None:
    """keep*average + add*rows^T rows into `average` (a view), the lower blocks multiplied out
    and the upper one mirrored, recursively on the diagonal blocks while they are large."""
    size = rows.shape[1]
    if size < BLOCKED_GRAM_MIN_SIZE:
        average.addmm_(rows.mT, rows, beta=keep, alpha=add)
        return
    half = size // 2
    first, second = rows[:, :half], rows[:, half:]
    _blocked_gram(average[:half, :half], first, keep, add)
    average[half:, :half].addmm_(second.mT, first, beta=keep, alpha=add)
    _blocked_gram(average[half:, half:], second, keep, add)
    average[:half, half:].copy_(average[half:, :half].mT)


def with_ones_column(rows: Tensor) -> Tensor:
    """[rows | 1], a copy with a column of ones appended."""
    ones = torch.ones(rows.shape[0], 1, dtype=rows.dtype, device=rows.device)
    return torch.cat([rows, ones], dim=1)


def accumulate_gram_average(
    average: Tensor | None,
    rows: Tensor,
    decay: float,
    scale: float = 1.0,
    precision: MatmulPrecision = MatmulPrecision.full,
    ones_column: bool = False,
) -> Tensor:
    """decay*average + (1-decay)*scale*rows^T rows: a running average of scale*rows^T rows
    (of [rows | 1] with `ones_column`)."""
    return accumulate_gram(
        average, rows, decay, (1.0 - decay) * scale, precision, ones_column=ones_column
    )
