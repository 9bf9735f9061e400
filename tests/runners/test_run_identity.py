"""A run's identity: what decides its result, and nothing else."""

from __future__ import annotations

from runners.run_identity import group_id, run_id
from tests.conftest import compose_config


def ids(*overrides: str) -> tuple[str, str, str]:
    cfg = compose_config(*overrides)
    choice = cfg.hydra.runtime.choices.get("experiment")
    experiment = "default" if choice in (None, "null") else choice
    output = cfg.hydra.run.dir  # as Hydra resolves it for the run
    return run_id(cfg, experiment), group_id(cfg, experiment), str(output)


def test_bookkeeping_settings_do_not_change_the_identity() -> None:
    base, group, _ = ids()
    for override in (
        "logger=none",
        "paths.runs_dir=/elsewhere",
        "paths.data_dir=/data",
        "trainer.force=true",
        "trainer.checkpoint_every_epochs=5",
    ):
        assert ids(override)[:2] == (base, group), override


def test_settings_that_change_results_change_the_identity() -> None:
    base, group, _ = ids()
    for override in (
        "optimizer.lr=0.5",
        "trainer.batch_size=100",
        "model=mlp",
        "optimizer=adam",
        "trainer.max_epochs=3",
    ):
        changed = ids(override)
        assert changed[0] != base and changed[1] != group, override


def test_seeds_share_a_group() -> None:
    seed0, group0, _ = ids("seed=0")
    seed1, group1, _ = ids("seed=1")
    assert seed0 != seed1 and group0 == group1


def test_the_run_directory_is_experiment_and_run_id() -> None:
    run, _, output = ids("paths.runs_dir=/tmp/r")
    assert output == f"/tmp/r/default/{run}"
    demo_run, _, demo_output = ids("experiment=demo", "paths.runs_dir=/tmp/r")
    assert demo_output == f"/tmp/r/demo/{demo_run}"
