"""The benchmark's problems: the papers' models at their batch sizes, on synthetic inputs.

Each is built through the runner itself (runners.build.build_run on a composed config), so the
model, the likelihood and the optimizer are exactly those of a training run. The inputs are
synthetic data sets of the right shape (data.synthetic): the cost of a step does not depend
on the pixel values, so no data set needs to be downloaded; the output says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from runners.build import BuiltRun, build_run
from runners.config_schema import register_configs
from runners.distributed import SINGLE, World
from runners.run_identity import register_resolvers

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def optimizer_names() -> tuple[str, ...]:
    """The optimizers a benchmark can build: one per conf/optimizer/<name>.yaml, the same
    names as `optimizer=<name>` of a training run."""
    return tuple(sorted(path.stem for path in (Path(CONF_DIR) / "optimizer").glob("*.yaml")))


@dataclass(frozen=True)
class BenchProblem:
    name: str
    model: str
    dataset: str  # a synthetic twin of the paper's data set
    batch_size: int
    schedule: tuple[int, int]  # the papers' (curvature_every, inverse_every) for this model
    rounds: int = 5  # timed rounds by default (each round: one step of every kind)
    batches: int = 4  # distinct mini-batches the steps cycle through
    overrides: tuple[str, ...] = ()  # more config overrides, e.g. a smaller model for tests

    def describe(self) -> str:
        return f"{self.model}, batch {self.batch_size}, dataset={self.dataset}"


PROBLEMS: dict[str, BenchProblem] = {
    problem.name: problem
    for problem in (
        # rounds: enough for a stable median where steps are cheap (the autoencoder's ratios
        # moved by up to 0.1x between 7-round runs on a 2-core VM, so 15, ~7 s each); VGG16-BN's
        # KFAC refresh takes ~13 s on a 2-core CPU, so `make bench` keeps within ~12 minutes
        BenchProblem("mnist_ae", "mnist_ae", "synthetic", 1000, (1, 20), rounds=15),
        BenchProblem("resnet32", "resnet32", "synthetic_cifar10", 128, (10, 100), rounds=9),
        BenchProblem("vgg16_bn", "vgg16_bn", "synthetic_cifar100", 128, (10, 100), rounds=2),
    )
}


# Methods whose authors run their curvature work on every step whatever the problem: the
# K-BFGS code's Kron_BFGS_update runs each iteration (optimizers.kbfgs), so their paper
# schedule is 1/1 where the Kronecker methods take each problem's T1/T2.
EVERY_STEP_METHODS = ("kbfgs", "kbfgs_l")


def paper_schedule(problem: BenchProblem, optimizer: str) -> tuple[int, int]:
    """The (curvature_every, inverse_every) the papers run `optimizer` with on `problem`."""
    return (1, 1) if optimizer in EVERY_STEP_METHODS else problem.schedule


def problem_config(
    problem: BenchProblem,
    optimizer: str,
    schedule: tuple[int, int],
    device: str,
    optimizer_settings: tuple[tuple[str, str], ...] = (),
) -> DictConfig:
    """The composed config of `problem` with conf/optimizer/<optimizer>.yaml, the given
    schedule where the optimizer has one, no warm start (it is outside the training clock
    anyway), and `optimizer_settings` (key, YAML value) where the optimizer has the key."""
    register_configs()
    register_resolvers()
    overrides = [
        f"model={problem.model}",
        f"dataset={problem.dataset}",
        f"optimizer={optimizer}",
        f"trainer.batch_size={problem.batch_size}",
        f"dataset.train_size={problem.batch_size * problem.batches}",
        f"dataset.test_size={problem.batch_size}",
        f"device={device}",
        "logger=none",
        *problem.overrides,
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    curvature_every, inverse_every = schedule
    settings = {
        "curvature_every": curvature_every,
        "inverse_every": inverse_every,
        "warm_start": False,
        **{key: yaml.safe_load(value) for key, value in optimizer_settings},
    }
    with open_dict(cfg):
        for key, value in settings.items():
            if key in cfg.optimizer:
                cfg.optimizer[key] = value
    return cfg


def build(
    problem: BenchProblem,
    optimizer: str,
    schedule: tuple[int, int],
    device: str,
    optimizer_settings: tuple[tuple[str, str], ...] = (),
    world: World = SINGLE,
) -> BuiltRun:
    """Model, likelihood, optimizer and batches, as a training run builds them (same seed, so
    every optimizer starts from the same weights); in a data-parallel benchmark (`world`),
    this rank's slice of every global mini-batch on this rank's device."""
    cfg = problem_config(problem, optimizer, schedule, device, optimizer_settings)
    return build_run(cfg, problem.model, problem.dataset, world)
