"""Running averages of curvature statistics.

    S <- keep*S + add*X^T X

fused into one in-place matrix product (torch.addmm), so refreshing a factor makes no
temporary of its size. An exponential average with decay rho and estimate S_hat = scale*X^T X
is keep = rho, add = (1-rho)*scale; keep = 0 (or no S yet) sets S = add*X^T X.
"""

from __future__ import annotations

import torch
from torch import Tensor


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
