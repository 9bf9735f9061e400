"""conf/search/: one search space per optimizer config, each naming real constructor
arguments with ranges that can be searched; a bad space is a message naming its key."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from hydra.utils import get_object

from runners.run_identity import identity_dict
from runners.tuning.space import SEARCH_DIR, SearchSpaceError, check_space, load_space
from tests.conftest import CONF_DIR, compose_config

OPTIMIZERS = sorted(path.stem for path in (CONF_DIR / "optimizer").glob("*.yaml"))


def test_every_optimizer_config_has_a_search_space() -> None:
    spaces = sorted(path.stem for path in SEARCH_DIR.glob("*.yaml"))
    assert spaces == OPTIMIZERS


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_each_space_names_constructor_arguments_with_valid_ranges(optimizer: str) -> None:
    space = load_space(optimizer)
    cfg = compose_config(f"optimizer={optimizer}")
    check_space(space, cfg.optimizer, get_object(cfg.optimizer._target_))
    assert space.main_hyperparameter == "lr"
    for key, distribution in space.distributions.items():
        assert key in cfg.optimizer, f"{optimizer}: {key} is not in its config"
        if isinstance(distribution, optuna.distributions.FloatDistribution):
            assert distribution.low < distribution.high
            assert not distribution.log or distribution.low > 0
        # the authors' grid covers the same range (its values inside the sampled bounds)
        grid = space.grid.get(key, [])
        assert grid, f"{optimizer}: no grid for {key}"
        assert all(distribution.low <= v <= distribution.high for v in grid)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "space:\n  lr: {distribution: log_uniform, low: 1.0, high: 1.0}\n",
            "space.lr: empty range",
        ),
        (
            "space:\n  lr: {distribution: log_uniform, low: 0.0, high: 1.0}\n",
            "space.lr: log_uniform needs low > 0",
        ),
        (
            "space:\n  lr: {distribution: log_uniform, low: -1.0, high: 1.0}\n",
            "space.lr: log_uniform needs low > 0",
        ),
        (
            "space:\n  lr: {distribution: categorical, choices: []}\n",
            "space.lr: categorical needs a non-empty list",
        ),
        (
            "space:\n  lr: {distribution: normal, low: 0.1, high: 1.0}\n",
            "space.lr: unknown distribution 'normal'",
        ),
        (
            "space:\n  lr: {distribution: uniform, low: 0.1, high: .inf}\n",
            "space.lr.high must be a finite number",
        ),
        ("space: {}\n", "needs a non-empty mapping `space`"),
        (
            "space:\n  lr: {distribution: uniform, low: 0.1, high: 1.0}\ngrid:\n  lr: []\n",
            "grid.lr must be a non-empty list",
        ),
    ],
)
def test_a_bad_range_is_refused_with_its_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SearchSpaceError, match=re.escape(message)):
        load_space(write(tmp_path, text))


def test_an_unknown_argument_is_refused_with_the_arguments_there_are(tmp_path: Path) -> None:
    space = load_space(
        write(
            tmp_path,
            "space:\n  dampening: {distribution: uniform, low: 0.0, high: 1.0}\n"
            "  damping: {distribution: log_uniform, low: 0.001, high: 1.0}\n",
        )
    )
    cfg = compose_config("optimizer=adam")
    expected = "space.dampening is not an argument of torch.optim.Adam; its arguments are: lr"
    with pytest.raises(SearchSpaceError, match=re.escape(expected)):
        check_space(space, cfg.optimizer, get_object(cfg.optimizer._target_))


def test_a_missing_space_says_how_to_add_one() -> None:
    with pytest.raises(SearchSpaceError, match=re.escape("add conf/search/no_such.yaml")):
        load_space("no_such")


def test_runs_recorded_before_tuning_existed_keep_their_identity() -> None:
    """The settings tuning added are left out of a run's identity at their neutral values,
    and are part of it otherwise (runners.run_identity)."""
    plain = identity_dict(compose_config("experiment=demo"))
    assert "tuning" not in plain
    assert "validation_size" not in plain["dataset"] and "split_seed" not in plain["dataset"]
    assert "evaluate_test" not in plain["trainer"]
    tuned = identity_dict(
        compose_config(
            "experiment=demo",
            "dataset.validation_size=100",
            "tuning.study=s",
            "tuning.role=trial",
            "trainer.evaluate_test=false",
        )
    )
    assert tuned["tuning"]["study"] == "s" and tuned["dataset"]["validation_size"] == 100
    assert tuned["trainer"]["evaluate_test"] is False
