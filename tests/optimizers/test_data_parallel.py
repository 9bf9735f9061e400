"""Data parallel: two processes on slices of the global batch = one process on all of it.

Two CPU processes (the gloo backend, a `file://` rendezvous in tmp_path, world size 2) each
train the conformance problems' tiny float64 networks on their slice of every global batch
of 16 (split 8/8, and 10/6 for the unequal case), and the parent trains the same networks in
one process on the whole batches: the final weights and the step losses must agree to
rtol=1e-10, atol=1e-12, for every method (optimizers.distributed, docs/optimizers.md "Data
parallel"), for every row of the conformance table. Both ranks must hold the same weights,
exactly.

Every curvature method runs with its conformance row's `deterministic` settings
(fisher=empirical): a sampled Fisher draws its labels from each process's random stream, and
one process drawing 16 labels and two processes drawing 8 each make different draws (the
same algorithm, different samples), so only the empirical Fisher can be compared exactly.
TENGraD's `distributed_fisher: local` differs by design (each rank's own Fisher block, the
directions averaged): it must train and keep the ranks identical, and differ from `global`.

All cases run in ONE pair of worker processes (a loop inside the worker), so the test pays
for one spawn; every join has a timeout, and the process group's own timeout ends a
collective that waits for a dead partner, so the test cannot hang.
"""

from __future__ import annotations

import datetime
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from optimizers import distributed
from tests.optimizers.conformance import OPTIMIZERS
from tests.optimizers.problems import closure_for, full_loss, tiny_batches, tiny_convnet, tiny_mlp

ROWS = {info.name: info for info in OPTIMIZERS}
WORLD = 2
STEPS = 5
GLOBAL_BATCH = 16
JOIN_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Case:
    name: str
    optimizer: str
    network: str  # "mlp" or "convnet"
    split: tuple[int, int] = (8, 8)  # rank 0's and rank 1's examples of each global batch
    overrides: dict[str, Any] = field(default_factory=dict)
    exact: bool = True  # compared with the one-process run


# curvature_every = 1, inverse_every = 2 for the methods with running statistics (their rows'
# settings), so that 5 steps cross refreshes of the statistics and of the inverses; K-BFGS
# every step (the authors' schedule: a second pass and the H updates on every step)
KBFGS_EVERY_STEP = {"inverse_every": 1}
CASES = (
    Case("sgd", "sgd", "mlp"),
    Case("adam", "adam", "mlp"),
    Case("kfac", "kfac", "mlp"),
    Case("kfac_unequal", "kfac", "mlp", (10, 6)),
    Case("kfac_conv", "kfac", "convnet"),
    Case("kfac_conv_unequal_trace", "kfac", "convnet", (10, 6), {"damping_split": "trace"}),
    Case("shampoo", "shampoo", "mlp"),
    Case("shampoo_conv_newton", "shampoo", "convnet", (10, 6), {"root_method": "coupled_newton"}),
    Case("tnt", "tnt", "mlp"),
    Case("tnt_conv_unequal", "tnt", "convnet", (10, 6)),
    Case("kbfgs", "kbfgs", "mlp", overrides=KBFGS_EVERY_STEP),
    Case("kbfgs_unequal", "kbfgs", "mlp", (10, 6), KBFGS_EVERY_STEP),
    Case("kbfgs_l", "kbfgs_l", "mlp", overrides=KBFGS_EVERY_STEP),
    Case("tengrad", "tengrad", "mlp"),
    Case("tengrad_unequal", "tengrad", "mlp", (10, 6)),
    Case("tengrad_conv", "tengrad", "convnet"),
    Case("tengrad_conv_exact", "tengrad", "convnet", (10, 6), {"conv_gradients": "exact"}),
    Case("tengrad_local", "tengrad", "mlp", overrides={"distributed_fisher": "local"}, exact=False),
    # the worked example and the first-order methods: nothing of their own to reduce
    Case("diagonal", "diagonal", "mlp", (10, 6)),
    Case("sgdw", "sgdw", "mlp"),
    Case("adam_on_momentum", "adam_on_momentum", "mlp"),
    Case("rmsprop_on_momentum", "rmsprop_on_momentum", "mlp"),
)


def network(name: str) -> nn.Module:
    return tiny_mlp() if name == "mlp" else tiny_convnet()


def train(case: Case, rank: int, world: int) -> dict[str, Any]:
    """The case's 5 steps on this rank's slice of each global batch (all of it for world 1):
    the final weights, the step losses and the full loss before and after."""
    info = ROWS[case.optimizer]
    model = network(case.network)
    optimizer = info.build(model, **{**info.deterministic, **case.overrides})
    batches = tiny_batches(STEPS, batch_size=GLOBAL_BATCH)
    before = full_loss(model, batches)
    start = sum(case.split[:rank]) if world > 1 else 0
    stop = start + case.split[rank] if world > 1 else GLOBAL_BATCH
    losses = []
    for index, (inputs, targets) in enumerate(batches):
        torch.manual_seed(index)  # as problems.take_steps
        closure = closure_for(model, (inputs[start:stop], targets[start:stop]))
        losses.append(optimizer.step(closure).detach().clone())
    return {
        "weights": [p.detach().clone() for p in model.parameters()],
        "losses": torch.stack(losses),
        "before": before,
        "after": full_loss(model, batches),
    }


def worker(rank: int, rendezvous: str, out: str) -> None:
    """One rank: every case in turn, its results saved to <out>/rank<rank>.pt (a traceback
    to <out>/rank<rank>.error on failure)."""
    torch.set_num_threads(1)
    try:
        dist.init_process_group(
            "gloo",
            init_method=rendezvous,
            rank=rank,
            world_size=WORLD,
            timeout=datetime.timedelta(seconds=30),
        )
        results = {case.name: train(case, rank, WORLD) for case in CASES}
        torch.save(results, Path(out) / f"rank{rank}.pt")
        dist.barrier()
        dist.destroy_process_group()
    except BaseException:
        (Path(out) / f"rank{rank}.error").write_text(traceback.format_exc())
        raise


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The two ranks' results of every case, from one spawn of two processes."""
    out = tmp_path_factory.mktemp("data_parallel")
    rendezvous = f"file://{out / 'rendezvous'}"
    context = mp.get_context("spawn")
    processes = [
        context.Process(target=worker, args=(rank, rendezvous, str(out))) for rank in range(WORLD)
    ]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join(JOIN_TIMEOUT_S)
    finally:
        hung = [process for process in processes if process.is_alive()]
        for process in hung:
            process.kill()
            process.join(5.0)
    errors = "\n".join(path.read_text() for path in sorted(out.glob("rank*.error")))
    assert not errors, errors
    assert not hung, f"worker processes still running after {JOIN_TIMEOUT_S} s"
    assert all(process.exitcode == 0 for process in processes), [p.exitcode for p in processes]
    return [torch.load(out / f"rank{rank}.pt") for rank in range(WORLD)]


@pytest.mark.parametrize("case", [case for case in CASES if case.exact], ids=lambda c: c.name)
def test_two_ranks_take_the_one_process_steps(two_ranks: list[dict[str, Any]], case: Case) -> None:
    torch.set_num_threads(1)
    reference = train(case, 0, 1)
    result = two_ranks[0][case.name]
    torch.testing.assert_close(result["losses"], reference["losses"], rtol=1e-10, atol=1e-12)
    for got, expected in zip(result["weights"], reference["weights"], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert reference["after"] < reference["before"]  # the steps did something


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_both_ranks_hold_the_same_weights(two_ranks: list[dict[str, Any]], case: Case) -> None:
    first, second = (results[case.name] for results in two_ranks)
    assert torch.equal(first["losses"], second["losses"])
    for a, b in zip(first["weights"], second["weights"], strict=True):
        assert torch.equal(a, b)


def test_tengrad_local_fisher_trains_and_differs_from_the_global_one(
    two_ranks: list[dict[str, Any]],
) -> None:
    local, global_ = two_ranks[0]["tengrad_local"], two_ranks[0]["tengrad"]
    assert local["after"] < local["before"]
    difference = max(
        float((a - b).abs().max())
        for a, b in zip(local["weights"], global_["weights"], strict=True)
    )
    assert difference > 1e-6  # a different preconditioner, not round-off


# ------------------------------------------------------------------ without a process group
def test_the_collectives_are_no_ops_without_a_process_group() -> None:
    assert not dist.is_initialized()
    assert distributed.world() == (0, 1)
    assert not distributed.is_distributed()
    tensors = [torch.arange(3.0), torch.ones(2, 2, dtype=torch.float64)]
    copies = [t.clone() for t in tensors]
    distributed.weighted_mean_(tensors, 5)
    for tensor, copy in zip(tensors, copies, strict=True):
        assert torch.equal(tensor, copy)
    gathered = distributed.all_gather_rows(tensors)
    assert all(a is b for a, b in zip(gathered, tensors, strict=True))
    assert distributed.global_count(7) == 7
    assert distributed.assign_by_cost([8.0, 1.0, 27.0]) == [0, 0, 0]
    distributed.broadcast_from_owners([tensors], [0])
    assert torch.equal(tensors[0], copies[0])


def test_costly_items_are_spread_over_the_ranks_largest_first() -> None:
    # 27 -> rank 0; 8 -> rank 1; 8 -> rank 1 (8 < 27); 1 -> rank 1 (16 < 27); ties by index
    assert distributed.assign_by_cost([8.0, 1.0, 27.0, 8.0], size=2) == [1, 1, 0, 1]
    assert distributed.assign_by_cost([1.0, 1.0, 1.0], size=3) == [0, 1, 2]
    assert distributed.assign_by_cost([], size=2) == []


@pytest.mark.filterwarnings("ignore::optimizers.curvature.UnsupportedLayerWarning")
@pytest.mark.parametrize("info", OPTIMIZERS, ids=lambda info: info.name)
def test_one_process_never_enters_a_collective(info: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a process group no collective is called (each would raise here) and no
    "communication" phase is entered: the single-process path is today's."""

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a collective without a process group")

    for name in ("all_reduce", "all_gather", "broadcast"):
        monkeypatch.setattr(dist, name, forbidden)
    entered: list[str] = []

    class Listener:
        def enter(self, name: str) -> None:
            entered.append(name)

        def exit(self, name: str) -> None:
            pass

    from optimizers.phases import listening

    model = tiny_convnet()
    optimizer = info.build(model)
    with listening(Listener()):
        for index, batch in enumerate(tiny_batches(3)):
            torch.manual_seed(index)
            optimizer.step(closure_for(model, batch))
    assert "communication" not in entered
