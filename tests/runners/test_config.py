"""Config composition through real Hydra: every option of every group composes onto the typed
schema, and mistakes fail at composition with Hydra's own message."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from runners.config_schema import DatasetConfig, LoggerConfig, TrainerConfig, register_configs
from tests.conftest import CONF_DIR, compose_config

GROUPS = ("optimizer", "model", "dataset", "trainer", "logger", "experiment", "scale")


def copy_conf(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    return conf


def compose_from(conf: Path, *overrides: str) -> DictConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def group_options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def tuned_pairs(group: str = "tuned") -> list[tuple[str, str]]:
    return sorted((path.parent.name, path.stem) for path in (CONF_DIR / group).glob("*/*.yaml"))


@pytest.mark.parametrize(
    ("group", "option"), [(group, option) for group in GROUPS for option in group_options(group)]
)
def test_every_group_option_composes(group: str, option: str) -> None:
    cfg = compose_config(f"{group}={option}")
    assert cfg.hydra.runtime.choices[group] == option
    assert OmegaConf.get_type(cfg.trainer) is TrainerConfig
    assert OmegaConf.get_type(cfg.dataset) is DatasetConfig
    assert OmegaConf.get_type(cfg.logger) is LoggerConfig
    assert "_target_" in cfg.optimizer and "_target_" in cfg.model
    OmegaConf.resolve(cfg)  # every interpolation resolves


@pytest.mark.parametrize(("experiment", "optimizer"), tuned_pairs())
def test_tuned_settings_compose_into_the_optimizer(experiment: str, optimizer: str) -> None:
    tuned = OmegaConf.load(CONF_DIR / "tuned" / experiment / f"{optimizer}.yaml")
    cfg = compose_config(f"experiment={experiment}", f"optimizer={optimizer}")
    for key, value in tuned.items():
        assert cfg.optimizer[key] == value


@pytest.mark.parametrize(("experiment", "optimizer"), tuned_pairs("tuned_trainer"))
def test_tuned_budgets_compose_into_the_trainer(experiment: str, optimizer: str) -> None:
    tuned = OmegaConf.load(CONF_DIR / "tuned_trainer" / experiment / f"{optimizer}.yaml")
    cfg = compose_config(f"experiment={experiment}", f"optimizer={optimizer}")
    assert OmegaConf.get_type(cfg.trainer) is TrainerConfig
    for key, value in tuned.items():
        assert cfg.trainer[key] == value
    overridden = compose_config(
        f"experiment={experiment}", f"optimizer={optimizer}", "trainer.max_epochs=3"
    )
    assert overridden.trainer.max_epochs == 3  # the command line still wins


def test_tuned_settings_apply_to_their_experiment_only(tmp_path: Path) -> None:
    conf = copy_conf(tmp_path)
    (conf / "tuned" / "demo" / "sgd.yaml").write_text("lr: 0.777\nmomentum: 0.5\n")
    with_experiment = compose_from(conf, "experiment=demo", "optimizer=sgd")
    without = compose_from(conf, "optimizer=sgd")
    other_optimizer = compose_from(conf, "experiment=demo", "optimizer=torch_optim")
    assert (with_experiment.optimizer.lr, with_experiment.optimizer.momentum) == (0.777, 0.5)
    assert (without.optimizer.lr, without.optimizer.momentum) == (0.01, 0.9)
    assert other_optimizer.optimizer.lr == 0.01


def test_command_line_overrides_win_over_tuned_settings() -> None:
    experiment, optimizer = tuned_pairs()[0]
    cfg = compose_config(f"experiment={experiment}", f"optimizer={optimizer}", "optimizer.lr=0.5")
    assert cfg.optimizer.lr == 0.5


def test_demo_experiment_pins_the_problem() -> None:
    cfg = compose_config("experiment=demo")
    assert cfg.hydra.runtime.choices.model == "mnist_ae"
    assert cfg.hydra.runtime.choices.dataset == "fashion_mnist"
    assert cfg.trainer.max_epochs > 0


def test_misspelt_key_on_the_command_line_fails_at_composition() -> None:
    with pytest.raises(ConfigCompositionException) as failure:
        compose_config("trainer.max_epoch=3")
    assert "max_epoch" in str(failure.value.__cause__) or "max_epoch" in str(failure.value)


def test_wrong_type_fails_at_composition() -> None:
    with pytest.raises(ConfigCompositionException) as failure:
        compose_config("trainer.max_epochs=abc")
    assert isinstance(failure.value.__cause__, ValidationError)
    assert "could not be converted to Integer" in str(failure.value.__cause__)


def test_unknown_enum_value_lists_the_choices() -> None:
    with pytest.raises(ConfigCompositionException) as failure:
        compose_config("trainer.lr_schedule=cosin")
    assert "expected one of [constant, step, cosine]" in str(failure.value.__cause__)


def test_misspelt_key_in_a_yaml_file_fails_at_composition(tmp_path: Path) -> None:
    conf = copy_conf(tmp_path)
    (conf / "trainer" / "typo.yaml").write_text("batch_size: 10\nmax_epoch: 3\n")
    with pytest.raises(ConfigCompositionException, match="Key 'max_epoch' not in 'TrainerConfig'"):
        compose_from(conf, "trainer=typo")
