"""A small sweep with known curves over two of the papers' problems, for the selection,
target, table, figure and report tests. Every run is described in RUNS, so tests derive
what they expect from these numbers, not from the code under test.

tnt_mnist_ae (autoencoder; rule: lowest training loss), 3 epochs, 10 steps per epoch:
    sgd   lr 0.1  seeds 0, 1  best 55, 50  -> 52.5
    sgd   lr 0.3  seeds 0, 1  best 45, 40  -> 42.5   chosen
    tnt   lr 1e-4 seeds 0, 1  best 38, 40  -> 39     chosen (only setting)
    kfac  lr 3e-3 seed 0 best 39, seed 1 diverged -> inf
    kfac  lr 1e-3 seeds 0, 1  best 44, 46  -> 45     chosen
    adam_on_momentum (the TNT paper's Adam)
          lr 1e-3 seeds 0, 1  best 43, 41  -> 42     chosen
    (no Shampoo: tnt_fig1 has to say it is missing, as it has to for tnt_faces_ae)
tnt_cifar10_resnet32 (classifier; rule: highest test accuracy), 2 epochs:
    sgd   lr 0.1  best accuracy 0.90, 0.92 -> 0.91   chosen (lr 0.3 trains lower but
    sgd   lr 0.3  best accuracy 0.93, 0.85 -> 0.89           generalises worse)
    tnt   lr 1e-4 best accuracy 0.94, 0.92 -> 0.93   chosen
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from tests.analysis.run_records import machine_load_section, write_run

AE, CNN = "tnt_mnist_ae", "tnt_cifar10_resnet32"


@dataclass(frozen=True)
class Run:
    problem: str
    method: str
    lr: float
    seed: int
    losses: list[float]
    seconds_per_epoch: float
    accuracies: list[float] | None = None
    status: str = "completed"
    state_bytes: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return f"{self.problem}-{self.method}-{self.lr:g}-s{self.seed}"


RUNS = [
    Run(AE, "sgd", 0.1, 0, [100, 80, 60, 55], 1.0),
    Run(AE, "sgd", 0.1, 1, [100, 70, 55, 50], 1.0),
    Run(AE, "sgd", 0.3, 0, [100, 60, 50, 45], 1.0),
    Run(AE, "sgd", 0.3, 1, [100, 65, 52, 40], 2.0),
    Run(AE, "tnt", 1e-4, 0, [100, 50, 42, 38], 3.0, state_bytes=2**21),
    Run(AE, "tnt", 1e-4, 1, [100, 55, 44, 40], 3.0, state_bytes=2**21),
    Run(AE, "kfac", 3e-3, 0, [100, 45, 41, 39], 2.5),
    Run(AE, "kfac", 3e-3, 1, [100, 50, math.nan], 2.5, status="diverged"),
    Run(AE, "kfac", 1e-3, 0, [100, 70, 50, 44], 2.5),
    Run(AE, "kfac", 1e-3, 1, [100, 72, 52, 46], 2.5),
    Run(AE, "adam_on_momentum", 1e-3, 0, [100, 58, 48, 43], 1.5),
    Run(AE, "adam_on_momentum", 1e-3, 1, [100, 60, 49, 41], 1.5),
    Run(CNN, "sgd", 0.1, 0, [2.3, 1.0, 0.5], 10.0, [0.1, 0.80, 0.90]),
    Run(CNN, "sgd", 0.1, 1, [2.3, 1.1, 0.6], 10.0, [0.1, 0.78, 0.92]),
    Run(CNN, "sgd", 0.3, 0, [2.3, 0.8, 0.3], 10.0, [0.1, 0.85, 0.93]),
    Run(CNN, "sgd", 0.3, 1, [2.3, 0.8, 0.3], 10.0, [0.1, 0.80, 0.85]),
    Run(CNN, "tnt", 1e-4, 0, [2.3, 0.9, 0.4], 30.0, [0.1, 0.88, 0.94]),
    Run(CNN, "tnt", 1e-4, 1, [2.3, 0.9, 0.4], 30.0, [0.1, 0.86, 0.92]),
]
CHOSEN_LR = {
    (AE, "sgd"): 0.3,
    (AE, "tnt"): 1e-4,
    (AE, "kfac"): 1e-3,
    (AE, "adam_on_momentum"): 1e-3,
    (CNN, "sgd"): 0.1,
    (CNN, "tnt"): 1e-4,
}
MODELS = {AE: ("mnist_ae", "mnist"), CNN: ("resnet32", "cifar10")}


def chosen(problem: str, method: str) -> list[Run]:
    return [
        r
        for r in RUNS
        if (r.problem, r.method) == (problem, method) and r.lr == CHOSEN_LR[(problem, method)]
    ]


def write_sweep(root: Path) -> Path:
    for run in RUNS:
        model, dataset = MODELS[run.problem]
        write_run(
            root,
            run.run_id,
            run.method,
            run.seed,
            run.losses,
            run.seconds_per_epoch,
            status=run.status,
            lr=run.lr,
            experiment=run.problem,
            accuracies=run.accuracies,
            model=model,
            dataset=dataset,
            state_bytes=run.state_bytes,
            optimizer_config=run.extra,
        )
    return root


def write_loaded_sweep(root: Path, adam_seed_1_mean: float | None) -> Path:
    """SGD-m and Adam, two seeds each, on a machine busy with them alone, except Adam seed 1
    at the given mean load on 2 cores (None: its summary has no machine_load section, as
    those of older runs); an overloaded run of another, not shown, setting of SGD-m."""
    normal = machine_load_section(cpu_count=2, mean=1.5)
    for seed in (0, 1):
        write_run(root, f"s{seed}", "sgd", seed, [100, 60 - seed], 1.0, machine_load=normal)
    write_run(
        root, "x0", "sgd", 0, [100, 90], 1.0, lr=0.01, machine_load=machine_load_section(2, 5.0)
    )
    write_run(root, "a0", "adam", 0, [100, 40], 2.0, machine_load=normal)
    load = None if adam_seed_1_mean is None else machine_load_section(2, adam_seed_1_mean)
    write_run(root, "a1", "adam", 1, [100, 41], 2.0, machine_load=load)
    return root
