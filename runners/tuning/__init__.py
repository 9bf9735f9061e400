"""Tuning: every optimizer searched with the same budget on a validation split (runners.tune).

space.py    the search spaces of conf/search/<optimizer>.yaml, checked before any trial
study.py    one Optuna study: its storage, its trials claimed by workers, its best setting
plan.py     what one tuning command runs: a study per optimizer, its trials' and final
            runs' overrides
"""
