"""Each method's tuning budget beside its result, and a warning when the methods compared on
one problem were tuned with different budgets (a comparison is fair only at equal effort).

A run's budget is what runners.tune recorded in its config: a final rerun of a study's best
setting says `tuning.trials` K and `tuning.sampler`; any other run was not tuned here (the
papers' settings, or values given by hand), which the tables say as "not tuned".
"""

from __future__ import annotations

import pandas as pd

from analysis.style import display_name, sort_key

NOT_TUNED = "not tuned"
TRIALS_COLUMN, SAMPLER_COLUMN = "config.tuning.trials", "config.tuning.sampler"


def budget_text(row: pd.Series) -> str:
    """'8 trials (qmc)' for a final rerun of a tuning study, 'not tuned' otherwise."""
    trials, sampler = row.get(TRIALS_COLUMN), row.get(SAMPLER_COLUMN)
    if pd.isna(trials):
        return NOT_TUNED
    return f"{int(trials)} trials ({sampler})" if not pd.isna(sampler) else f"{int(trials)} trials"


def budgets(runs: pd.DataFrame) -> pd.Series:
    """Per (problem, method) of `runs`: its budget text (the first run's; seeds share it)."""
    if runs.empty:
        return pd.Series(dtype=object)
    texts = runs.apply(budget_text, axis=1)
    return texts.groupby([runs["problem"], runs["method"]]).first()


def budget_warnings(runs: pd.DataFrame) -> dict[str, str]:
    """Per problem whose compared methods (give Results.compared) had different budgets, one
    line naming each method's; problems at equal budgets are absent."""
    warnings = {}
    per_method = budgets(runs)
    for problem in per_method.index.get_level_values("problem").unique():
        of_problem = per_method.xs(problem, level="problem")
        if of_problem.nunique() < 2:
            continue
        named = ", ".join(
            f"{display_name(method)}: {of_problem[method]}"
            for method in sorted(of_problem.index, key=sort_key)
        )
        warnings[problem] = (
            f"Warning: these methods were tuned with different budgets ({named}): the "
            "comparison does not give each the same tuning effort."
        )
    return warnings
