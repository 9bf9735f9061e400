"""The papers' experiments (conf/experiment/): what each pins against docs/problems.md, each
optimizer's own settings and budget, the scale knob, and a real smoke run of every experiment
(on Fashion-MNIST or a synthetic twin of its data set)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from runners.build import UserInputError, build_run
from tests.conftest import CONF_DIR, compose_config, read_metrics, read_summary, run_dirs, run_train

# experiment -> model, data set, batch size, max_epochs, max_time_s, LR decay epochs
# (docs/problems.md; FACES/CURVES budgets of the K-BFGS paper and all TENGraD values are the
# documented defaults of the experiment files).
PROBLEMS = {
    "tnt_mnist_ae": ("mnist_ae", "mnist", 1000, None, 500, []),
    "tnt_fmnist_ae": ("mnist_ae", "fashion_mnist", 1000, None, 500, []),
    "tnt_faces_ae": ("faces_ae", "faces", 1000, None, 2000, []),
    "tnt_cifar10_resnet32": ("resnet32", "cifar10", 128, 100, None, [40, 80]),
    "tnt_cifar100_vgg16": ("vgg16_bn", "cifar100", 128, 100, None, [40, 80]),
    "kbfgs_mnist_ae": ("mnist_ae", "mnist", 1000, None, 500, []),
    "kbfgs_fmnist_ae": ("mnist_ae", "fashion_mnist", 1000, None, 500, []),
    "kbfgs_faces_ae": ("faces_ae", "faces", 1000, None, 2000, []),
    "kbfgs_curves_ae": ("curves_ae", "curves", 1000, None, 500, []),
    "tengrad_fmnist": ("fmnist_2c2d", "fashion_mnist", 128, 100, None, []),
    "tengrad_cifar10": ("resnet32", "cifar10", 128, 100, None, [40, 80]),
}
# Each paper's optimizers: every experiment file documents the settings of all of them.
# (Adam in both papers' codes is Adam on the momentum, and the K-BFGS paper adds RMSprop on the
# momentum: optimizers/first_order.py; torch.optim.Adam stays `adam` elsewhere)
PAPER_OPTIMIZERS = {
    "tnt": ("tnt", "kfac", "shampoo", "adam_on_momentum", "sgd"),
    "kbfgs": ("kbfgs", "kbfgs_l", "kfac", "adam_on_momentum", "rmsprop_on_momentum", "sgd"),
    "tengrad": ("tengrad", "kfac", "sgd"),
}
FASHION_MNIST_TWINS = {"tnt_fmnist_ae": "tnt_mnist_ae", "kbfgs_fmnist_ae": "kbfgs_mnist_ae"}
FIRST_ORDER_LONGER = ("tnt_cifar10_resnet32", "tnt_cifar100_vgg16")
FIRST_ORDER = ("sgd", "adam_on_momentum")
EXISTING_OPTIMIZERS = (
    *FIRST_ORDER,
    "adam",
    "rmsprop_on_momentum",
    "sgdw",
    "kfac",
    "shampoo",
    "tnt",
    "kbfgs",
    "kbfgs_l",
    "tengrad",
)
# The TNT autoencoder experiments also run K-BFGS, K-BFGS(L) and TENGraD, so that one sweep
# compares all seven methods, each with its own settings.
ALL_SEVEN = ("tnt_mnist_ae", "tnt_fmnist_ae", "tnt_faces_ae")
SEVEN_METHODS = (*PAPER_OPTIMIZERS["tnt"], "kbfgs", "kbfgs_l", "tengrad")


def experiment_names() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml") if p.stem != "demo")


def test_every_experiment_is_specified() -> None:
    assert experiment_names() == sorted(PROBLEMS)


@pytest.mark.parametrize("experiment", sorted(PROBLEMS))
def test_experiment_pins_the_papers_problem(experiment: str) -> None:
    model, dataset, batch, epochs, seconds, decays = PROBLEMS[experiment]
    cfg = compose_config(f"experiment={experiment}", "optimizer=torch_optim")
    assert (cfg.hydra.runtime.choices.model, cfg.hydra.runtime.choices.dataset) == (model, dataset)
    trainer = cfg.trainer
    assert (trainer.batch_size, trainer.max_epochs, trainer.max_time_s) == (batch, epochs, seconds)
    assert list(trainer.lr_decay_epochs) == decays
    assert trainer.lr_schedule.value == ("step" if decays else "constant")
    text = (CONF_DIR / "experiment" / f"{experiment}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    if experiment in FASHION_MNIST_TWINS:  # documented once, in the MNIST experiment
        twin_of = FASHION_MNIST_TWINS[experiment]
        assert f"conf/experiment/{twin_of}.yaml" in text
        text = (CONF_DIR / "experiment" / f"{twin_of}.yaml").read_text()
    for optimizer in PAPER_OPTIMIZERS[experiment.split("_")[0]]:
        assert f"#   {optimizer}:" in text, optimizer


@pytest.mark.parametrize("experiment", sorted(PROBLEMS))
def test_every_optimizer_of_the_experiment_has_its_own_settings(experiment: str) -> None:
    optimizers = (
        SEVEN_METHODS if experiment in ALL_SEVEN else PAPER_OPTIMIZERS[experiment.split("_")[0]]
    )
    for optimizer in optimizers:
        tuned = CONF_DIR / "tuned" / experiment / f"{optimizer}.yaml"
        assert tuned.is_file(), tuned
        settings = OmegaConf.load(tuned)
        cfg = compose_config(f"experiment={experiment}", f"optimizer={optimizer}")
        for key, value in settings.items():
            assert cfg.optimizer[key] == value, (tuned, key)


@pytest.mark.parametrize("experiment", sorted(PROBLEMS))
@pytest.mark.parametrize("optimizer", EXISTING_OPTIMIZERS)
def test_first_order_budget_of_the_tnt_cnns(experiment: str, optimizer: str) -> None:
    """TNT's CNNs: SGD-m and Adam train 200 epochs (x0.1 at 60, 120, 180), the second-order
    methods 100 (x0.1 at 40, 80); elsewhere every optimizer has the experiment's budget."""
    cfg = compose_config(f"experiment={experiment}", f"optimizer={optimizer}")
    other = compose_config(f"experiment={experiment}", "optimizer=torch_optim")
    if experiment in FIRST_ORDER_LONGER and optimizer in FIRST_ORDER:
        assert (cfg.trainer.max_epochs, list(cfg.trainer.lr_decay_epochs)) == (200, [60, 120, 180])
        assert (other.trainer.max_epochs, list(other.trainer.lr_decay_epochs)) == (100, [40, 80])
    else:
        assert cfg.trainer == other.trainer


@pytest.mark.parametrize("experiment", sorted(PROBLEMS))
def test_smoke_scale_keeps_model_and_optimizer_settings(experiment: str) -> None:
    for optimizer in EXISTING_OPTIMIZERS:
        full = compose_config(f"experiment={experiment}", f"optimizer={optimizer}", "scale=full")
        smoke = compose_config(f"experiment={experiment}", f"optimizer={optimizer}", "scale=smoke")
        if optimizer == "sgd":  # full is the paper as configured
            default = compose_config(f"experiment={experiment}", f"optimizer={optimizer}")
            assert without_hydra(full) == without_hydra(default)
        assert smoke.optimizer == full.optimizer and smoke.model == full.model
        assert smoke.hydra.runtime.choices.dataset == full.hydra.runtime.choices.dataset
        assert (smoke.dataset.train_size, smoke.dataset.test_size) == (64, 32)
        assert (smoke.trainer.batch_size, smoke.trainer.max_epochs) == (32, 2)
        assert smoke.trainer.max_time_s is None
        assert smoke.trainer.lr_decay_epochs == full.trainer.lr_decay_epochs


@pytest.mark.parametrize(("twin", "original"), sorted(FASHION_MNIST_TWINS.items()))
def test_fashion_mnist_experiments_copy_the_mnist_ones(twin: str, original: str) -> None:
    for optimizer in EXISTING_OPTIMIZERS:
        mnist = compose_config(f"experiment={original}", f"optimizer={optimizer}")
        fmnist = compose_config(f"experiment={twin}", f"optimizer={optimizer}")
        for node in ("model", "optimizer", "trainer"):
            assert mnist[node] == fmnist[node], node
        assert fmnist.hydra.runtime.choices.dataset == "fashion_mnist"


def without_hydra(cfg: DictConfig) -> dict:
    return {key: cfg[key] for key in cfg if key != "hydra"}


# ----------------------------------------------------------------------------- pairings
def build(*overrides: str) -> None:
    cfg = compose_config(*overrides)
    choices = cfg.hydra.runtime.choices
    build_run(cfg, choices.model, choices.dataset)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ("model=faces_ae", "dataset=cifar100"),
            "model=faces_ae is an autoencoder but dataset=cifar100 defines no reconstruction",
        ),
        (
            ("model=resnet32", "dataset=curves"),
            "model=resnet32 is a classifier but dataset=curves has no labels",
        ),
        (
            ("model=vgg16_bn", "dataset=synthetic"),
            "model=vgg16_bn could not be built: input [1, 28, 28] is too small for 5 max-pools",
        ),
        (
            (
                "model=mnist_ae",
                "dataset=synthetic_cifar10",
                "dataset.reconstruction_likelihood=bernoulli",
            ),
            "model=mnist_ae is an autoencoder: it reconstructs the inputs as loaded, but "
            "dataset=synthetic_cifar10 normalises or augments them",
        ),
    ],
)
def test_impossible_pairings_are_refused(overrides: tuple[str, ...], message: str) -> None:
    with pytest.raises(UserInputError) as error:
        build("logger=none", "device=cpu", "trainer.batch_size=16", *overrides)
    assert message in str(error.value)


def test_any_classifier_on_any_labelled_data_set() -> None:
    cfg = compose_config(
        "model=resnet32", "dataset=synthetic_cifar100", "device=cpu", "trainer.batch_size=16"
    )
    built = build_run(cfg, "resnet32", "synthetic_cifar100")
    assert built.model.fc.out_features == 100
    assert built.batches.augmentation is not None  # CIFAR's crop + flip on training batches


def test_pairing_refused_at_start_up_by_the_real_command(tmp_path: Path) -> None:
    result = run_train("model=resnet32", "dataset=curves", "logger=none", runs_dir=tmp_path)
    assert result.returncode == 2
    assert "model=resnet32 is a classifier but dataset=curves has no labels" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_cifar_experiment_without_the_data_gives_the_offline_error(tmp_path: Path) -> None:
    empty = tmp_path / "no-data"
    result = run_train(
        "experiment=tnt_cifar10_resnet32",
        "logger=none",
        f"paths.data_dir={empty}",
        "dataset.download=false",  # the same message as a failed download, without the network
        runs_dir=tmp_path / "runs",
    )
    assert result.returncode == 2
    assert f"CIFAR10 is not in {empty.resolve()}/cifar-10-batches-py" in result.stdout
    assert "Fetch cifar-10-python.tar.gz from https://www.cs.toronto.edu/" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    (run_dir,) = run_dirs(tmp_path / "runs")
    assert read_summary(run_dir)["status"] == "failed"


# ----------------------------------------------------------------------------- smoke runs
# One real multirun per data set twin; every experiment appears once.
SMOKE_GROUPS = {
    "fashion_mnist": (("tnt_fmnist_ae", "kbfgs_fmnist_ae", "tengrad_fmnist"), None),
    "synthetic_28x28": (("tnt_mnist_ae", "kbfgs_mnist_ae", "kbfgs_curves_ae"), "synthetic"),
    "synthetic_faces": (("tnt_faces_ae", "kbfgs_faces_ae"), "synthetic_faces"),
    "synthetic_cifar10": (("tnt_cifar10_resnet32", "tengrad_cifar10"), "synthetic_cifar10"),
    "synthetic_cifar100": (("tnt_cifar100_vgg16",), "synthetic_cifar100"),
}


def test_smoke_groups_cover_every_experiment() -> None:
    covered = [name for experiments, _ in SMOKE_GROUPS.values() for name in experiments]
    assert sorted(covered) == sorted(PROBLEMS)


@pytest.mark.parametrize("group", sorted(SMOKE_GROUPS))
def test_every_experiment_runs_at_smoke_scale(tmp_path: Path, group: str) -> None:
    experiments, dataset = SMOKE_GROUPS[group]
    overrides = [
        f"experiment={','.join(experiments)}",
        "scale=smoke",
        "optimizer=sgd",
        "logger=none",
        *([f"dataset={dataset}"] if dataset else []),
    ]
    result = run_train(*overrides, runs_dir=tmp_path, multirun=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = run_dirs(tmp_path)
    assert sorted(read_summary(run)["experiment"] for run in runs) == sorted(experiments)
    for run in runs:
        summary = read_summary(run)
        assert summary["status"] == "completed", summary
        assert summary["tuned"] is True  # conf/tuned/<experiment>/sgd.yaml
        assert summary["steps"] == 4  # 64 examples / batch 32 x 2 epochs
        config = OmegaConf.load(run / "config.yaml")
        tuned = compose_config(f"experiment={summary['experiment']}", "optimizer=sgd").optimizer
        assert config.optimizer.lr == tuned.lr  # the experiment's own SGD-m settings
        metrics = read_metrics(run)
        assert metrics[0]["lr"] == tuned.lr
        assert math.isfinite(metrics[-1]["train/full_loss"])


@pytest.mark.slow  # 25 s; without it, composition (above) and the smoke runs cover the same
def test_one_sweep_runs_all_seven_methods_with_their_own_settings(tmp_path: Path) -> None:
    optimizers = SEVEN_METHODS  # the seven methods and K-BFGS(L)
    result = run_train(
        "experiment=tnt_fmnist_ae",
        "scale=smoke",
        f"optimizer={','.join(optimizers)}",
        "logger=none",
        runs_dir=tmp_path,
        multirun=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summaries = {read_summary(run)["optimizer"]: read_summary(run) for run in run_dirs(tmp_path)}
    assert sorted(summaries) == sorted(optimizers)
    for name, summary in summaries.items():
        assert summary["status"] == "completed", summary
        tuned = compose_config("experiment=tnt_fmnist_ae", f"optimizer={name}").optimizer
        config = OmegaConf.load(Path(summary["run_dir"]) / "config.yaml")
        assert config.optimizer == tuned, name


def test_an_optimizer_without_settings_for_the_experiment_is_said_and_recorded(
    tmp_path: Path,
) -> None:
    """No conf/tuned/<experiment>/<optimizer>.yaml: the run warns that the optimizer runs
    with its defaults, and records tuned: false."""
    assert not (CONF_DIR / "tuned" / "tnt_mnist_ae" / "diagonal.yaml").exists()
    result = run_train(
        "experiment=tnt_mnist_ae",
        "scale=smoke",
        "dataset=synthetic",
        "optimizer=diagonal",
        "logger=none",
        runs_dir=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no conf/tuned/tnt_mnist_ae/diagonal.yaml: optimizer=diagonal runs with its" in (
        result.stdout
    )
    (run,) = run_dirs(tmp_path)
    assert read_summary(run)["tuned"] is False
