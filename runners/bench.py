"""Cost benchmark: time per training step of each optimizer relative to SGD-m, in one process.

    python -m runners.bench [--optimizers sgd,kfac,shampoo,tnt] [--rounds 7] [--block 20]
                            [--batch-size 1000] [--device cpu] [--threads N]

Problem: the MNIST autoencoder (784-1000-500-250-30-250-500-1000-784, Bernoulli loss) at batch
1000, on synthetic inputs (uniform pixels in [0, 1] that are their own targets): the cost of
a step does not depend on the pixel values, so no data set is needed.

Each optimizer is built from its own conf/optimizer/<name>.yaml through the runner
(runners.build.build_optimizer), with statistics every step and inverses every 20 steps
(curvature_every=1, inverse_every=20) and no warm start, on its own copy of the same initial
model. A step is `optimizer.step(StepClosure(...))` inside the runner's StepClock, exactly as
in training, so the per-phase breakdown is the one the run records report.

Measurement: first a warm-up block per optimizer (it spans the first inverse_every steps,
during which inverses are refreshed every step, and the allocator's first touches); then
`rounds` rounds in which every optimizer runs one block of `block` steps in turn. Interleaving
makes slow drifts of a shared machine hit every optimizer alike. A block of 20 steps holds
exactly one inversion, so a block's mean time per step includes its amortised cost. Reported:
the median over rounds of the block mean, its ratio to SGD-m's, and the mean time per step of
each phase (runners.clock; optimizers.phases).
"""

from __future__ import annotations

import argparse
import copy
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict
from torch import Tensor, nn

from models.autoencoder import DeepAutoencoder
from models.likelihoods import BernoulliLikelihood
from optimizers.phases import PHASES
from runners.build import build_optimizer, resolve_device
from runners.clock import StepClock
from runners.closure import StepClosure
from runners.config_schema import register_configs
from runners.run_identity import register_resolvers

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
BASELINE = "sgd"
MNIST_AUTOENCODER = (1000, 500, 250, 30)


@dataclass(frozen=True)
class BenchSettings:
    optimizers: tuple[str, ...] = ("sgd", "kfac", "shampoo", "tnt")
    rounds: int = 7
    block: int = 20  # steps per timed block; a multiple of inverse_every holds whole periods
    batch_size: int = 1000
    encoder_sizes: tuple[int, ...] = MNIST_AUTOENCODER
    curvature_every: int = 1
    inverse_every: int = 20
    device: str = "cpu"


@dataclass
class Contender:
    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    clock: StepClock
    block_means_s: list[float] = field(default_factory=list)


def optimizer_config(name: str, settings: BenchSettings) -> DictConfig:
    """conf/optimizer/<name>.yaml, with the benchmark's schedule where the optimizer has one
    and no warm start (it is outside the training clock anyway)."""
    register_configs()
    register_resolvers()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"optimizer={name}", "logger=none"])
    schedule = {
        "curvature_every": settings.curvature_every,
        "inverse_every": settings.inverse_every,
        "warm_start": False,
    }
    with open_dict(cfg):
        for key, value in schedule.items():
            if key in cfg.optimizer:
                cfg.optimizer[key] = value
    return cfg


def synthetic_batches(count: int, batch_size: int, device: torch.device) -> list[Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(batch_size, 1, 28, 28, generator=generator).to(device) for _ in range(count)]


def run_block(contender: Contender, batches: list[Tensor], steps: int) -> float:
    """`steps` training steps; the mean seconds per step on the contender's clock."""
    likelihood = BernoulliLikelihood()
    start = contender.clock.train_s
    for index in range(steps):
        inputs = batches[index % len(batches)]
        with contender.clock.step():
            contender.optimizer.step(
                StepClosure(contender.model, likelihood, inputs, inputs.flatten(1))
            )
    return (contender.clock.train_s - start) / steps


def benchmark(settings: BenchSettings) -> pd.DataFrame:
    """One row per optimizer: median ms per step, ratio to SGD-m, mean ms per step by phase."""
    device = resolve_device(settings.device)
    torch.manual_seed(0)
    initial = DeepAutoencoder([1, 28, 28], list(settings.encoder_sizes)).to(device)
    batches = synthetic_batches(4, settings.batch_size, device)
    contenders = []
    for name in settings.optimizers:
        model = copy.deepcopy(initial)
        optimizer = build_optimizer(optimizer_config(name, settings), model)
        contenders.append(Contender(name, model, optimizer, StepClock(device)))
    for contender in contenders:  # warm-up: the first inverse_every steps, then whole blocks
        run_block(contender, batches, max(settings.block, settings.inverse_every))
        contender.clock = StepClock(device)  # phases of the measured blocks only
    for _ in range(settings.rounds):
        for contender in contenders:
            contender.block_means_s.append(run_block(contender, batches, settings.block))

    medians = {c.name: statistics.median(c.block_means_s) for c in contenders}
    baseline_s = medians.get(BASELINE, float("nan"))
    steps = settings.rounds * settings.block
    rows = []
    for contender in contenders:
        row = {
            "optimizer": contender.name,
            "ms/step": 1e3 * medians[contender.name],
            f"x {BASELINE}": medians[contender.name] / baseline_s,
        }
        for phase in PHASES:
            if phase != "data":
                row[f"{phase} ms"] = 1e3 * contender.clock.phase_s.get(phase, 0.0) / steps
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    defaults = BenchSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--optimizers", default=",".join(defaults.optimizers))
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--block", type=int, default=defaults.block, help="steps per block")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--device", default=defaults.device, help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = BenchSettings(
        optimizers=tuple(name.strip() for name in args.optimizers.split(",") if name.strip()),
        rounds=args.rounds,
        block=args.block,
        batch_size=args.batch_size,
        device=args.device,
    )
    table = benchmark(settings)
    print(
        f"MNIST autoencoder, batch {settings.batch_size}, synthetic inputs, device "
        f"{resolve_device(settings.device)}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}; statistics every {settings.curvature_every} step(s), inverses "
        f"every {settings.inverse_every}; median of {settings.rounds} interleaved blocks of "
        f"{settings.block} steps"
    )
    print(table.to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()
