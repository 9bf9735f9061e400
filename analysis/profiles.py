"""Dolan-Moré performance profiles (Dolan & Moré, Math. Programming 91, 2002).

For problems p, methods s and a cost t[p, s] > 0 (here: time or epochs to the target, inf
when the target was missed):

    r[p, s]   = t[p, s] / min over s' of t[p, s']     (performance ratio; inf when missed)
    rho_s(τ)  = |{p : r[p, s] <= τ}| / |P|              (fraction of problems within τ of
                                                        the best method)

rho_s(1) is the fraction of problems on which s was the fastest; rho_s(τ) for large τ the
fraction it solved at all. A method that has no run on a problem, or whose cost is NaN,
counts as having missed it; a problem no method solved counts against every method. A cost
of 0 (the target met at the initial weights) gives ratio 1 to every method with cost 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TAU_MAX = 4.0
TABLE_TAUS = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0)


def performance_ratios(costs: pd.DataFrame) -> pd.DataFrame:
    """costs: index problems, columns methods -> r[p, s] (inf when missed)."""
    values = costs.astype(float).fillna(np.inf)
    best = values.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = values.div(best, axis=0)
    # 0 / 0 (both met the target at once) is a tie, not undefined; inf / inf is a miss
    tie_at_zero = values.eq(0) & best.eq(0).to_numpy()[:, None]
    ratios = ratios.mask(tie_at_zero, 1.0)
    return ratios.where(np.isfinite(values), np.inf).fillna(np.inf)


def performance_profile(costs: pd.DataFrame, taus: np.ndarray | None = None) -> pd.DataFrame:
    """Index τ (1 to TAU_MAX), columns methods: rho_s(τ)."""
    if taus is None:
        taus = np.linspace(1.0, TAU_MAX, 301)
    ratios = performance_ratios(costs)
    within = ratios.to_numpy()[None, :, :] <= np.asarray(taus)[:, None, None]
    profile = within.mean(axis=1)  # over problems
    return pd.DataFrame(profile, index=pd.Index(taus, name="tau"), columns=ratios.columns)
