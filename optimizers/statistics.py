"""Running averages of curvature statistics, S <- decay*S + (1-decay)*S_hat.

decay = 0 (or no S yet) sets S = S_hat. Gram-matrix estimates are fused into one in-place
matrix product (torch.addmm), so refreshing a factor makes no temporary of its size:

    accumulate_gram(S, X, keep, add)  S <- keep*S + add*X^T X
"""

from __future__ import annotations

import torch
from torch import Tensor


def update_average(average: Tensor | None, estimate: Tensor, decay: float) -> Tensor:
    """decay*average + (1-decay)*estimate, in place when `average` exists."""
    if average is None:
        return estimate.clone()
    if decay == 0.0:
        return average.copy_(estimate)
    return average.mul_(decay).add_(estimate, alpha=1.0 - decay)


def accumulate_gram(average: Tensor | None, rows: Tensor, keep: float, add: float) -> Tensor:
    """keep*average + add*rows^T rows for `rows` of shape (M, d), in place when `average`
    exists (keep = 0 ignores its old values, NaN included)."""
    if average is None:
        return torch.mm(rows.mT, rows).mul_(add)
    return average.addmm_(rows.mT, rows, beta=keep, alpha=add)


def accumulate_gram_average(
    average: Tensor | None, rows: Tensor, decay: float, scale: float = 1.0
) -> Tensor:
    """decay*average + (1-decay)*scale*rows^T rows: a running average of scale*rows^T rows."""
    return accumulate_gram(average, rows, keep=decay, add=(1.0 - decay) * scale)
