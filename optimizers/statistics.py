"""Running averages of curvature statistics, S <- decay*S + (1-decay)*S_hat.

decay = 0 (or no S yet) sets S = S_hat. Gram-matrix estimates are fused into in-place matrix
products (torch.addmm), so refreshing a factor makes no temporary of its size:

    accumulate_gram(S, X, keep, add)  S <- keep*S + add*X^T X

X^T X is symmetric, so for large factors only its lower blocks are multiplied out and the
upper block is mirrored: with X = [X_1 | X_2], the products X_1^T X_1, X_2^T X_1 and
X_2^T X_2 are 3/4 of the full product's work.
"""

from __future__ import annotations

from torch import Tensor

from optimizers.precision import MatmulPrecision, gram

# Below this size the three smaller products cost more than the quarter of work they save.
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
) -> Tensor:
    """keep*average + add*rows^T rows for `rows` of shape (M, d), in place when `average`
    exists (keep = 0 ignores its old values, NaN included). With bfloat16 `precision` the
    product has bfloat16 operands (optimizers.precision) and the average stays in rows' dtype."""
    size = rows.shape[1]
    if precision != MatmulPrecision.full:
        estimate = gram(rows, precision)
        if average is None or keep == 0.0:
            return estimate.mul_(add) if average is None else average.copy_(estimate).mul_(add)
        return average.mul_(keep).add_(estimate, alpha=add)
    if average is None:
        average, keep = rows.new_empty(size, size), 0.0
    if size < BLOCKED_GRAM_MIN_SIZE:
        return average.addmm_(rows.mT, rows, beta=keep, alpha=add)
    half = size // 2
    first, second = rows[:, :half], rows[:, half:]
    average[:half, :half].addmm_(first.mT, first, beta=keep, alpha=add)
    average[half:, :half].addmm_(second.mT, first, beta=keep, alpha=add)
    average[half:, half:].addmm_(second.mT, second, beta=keep, alpha=add)
    average[:half, half:].copy_(average[half:, :half].mT)
    return average


def accumulate_gram_average(
    average: Tensor | None,
    rows: Tensor,
    decay: float,
    scale: float = 1.0,
    precision: MatmulPrecision = MatmulPrecision.full,
) -> Tensor:
    """decay*average + (1-decay)*scale*rows^T rows: a running average of scale*rows^T rows."""
    return accumulate_gram(
        average, rows, keep=decay, add=(1.0 - decay) * scale, precision=precision
    )
