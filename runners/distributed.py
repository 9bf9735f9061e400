"""Data-parallel runs: one run trained by several processes, set up from the launcher's
environment.

    torchrun --standalone --nproc-per-node=G -m runners.train ...
        torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT
    python -m runners.train -m hydra/launcher=slurm hydra.launcher.tasks_per_node=G ...
        submitit runs the job once per task (SUBMITIT_EXECUTOR=slurm, SLURM_NTASKS > 1);
        submitit.helpers.TorchDistributedEnvironment exports the same variables, the master
        being the job's first node
    srun python -m runners.train ...
        SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID; the master is the first host of
        the step's node list (MASTER_PORT from the environment, else derived from the job id)

With none of these, or a world of one process, there is no process group and the run is the
single-process code path exactly (`SINGLE`). Otherwise each process is one rank of a gloo
(CPU) or NCCL (CUDA, device cuda:LOCAL_RANK) process group for the duration of the run; the
group is destroyed when the run ends, however it ends.

What the ranks share (the rest of the harness relies on it):
    data        the same seeded shuffle on every rank; rank r trains on its contiguous slice
                of each global mini-batch (data.tensors.rank_slice)
    algorithm   runners.closure and the optimizers reduce gradients and curvature statistics
                over the group whenever torch.distributed is initialised with more than one
                rank, so each rank needs its own slice only
    decisions   rank 0 reads the run directory (summary, checkpoint) and broadcasts what it
                found; skip / resume / start, the time budget, a stop signal and a non-finite
                loss are agreed by collectives at the same points on every rank, so no rank
                ever waits in a collective that another rank has left (runners.trainer)
    records     rank 0 alone holds the run directory's lock and writes records, checkpoints
                and W&B; the other ranks log errors only

`SOBENCH_DIST_TIMEOUT_S` (default 1800) bounds how long a collective waits for a rank that
died; torchrun ends the other ranks as soon as one fails, SLURM when its step does.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class LaunchEnvironment:
    """What a launcher says about this process's place in the run."""

    rank: int
    world_size: int
    local_rank: int
    launcher: str  # torchrun (or any RANK/WORLD_SIZE launcher), submitit or srun


@dataclass(frozen=True)
class World:
    """The processes training one run, as seen from one of them. `SINGLE` is one process
    and no process group: every collective below is then the identity, without a call into
    torch.distributed."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: no process group
    device: torch.device | None = None  # this rank's device (None: the config decides)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that reads and writes the run directory."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def _collective_device(self) -> torch.device:
        # NCCL reduces CUDA tensors only; gloo CPU tensors (the ones used here)
        if self.backend == "nccl" and self.device is not None:
            return self.device
        return torch.device("cpu")

    def all_reduce(self, values: Tensor, op: str = "sum") -> Tensor:
        """The element-wise sum (or max) of `values` over the ranks, on values' device."""
        if not self.distributed:
            return values
        reduced = values.to(self._collective_device)
        reduce_op = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
        dist.all_reduce(reduced, op=reduce_op)
        return reduced.to(values.device)

    def max_of(self, values: Sequence[float]) -> list[float]:
        """The element-wise max over the ranks of a few numbers (flags, signal numbers)."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(list(values), dtype=torch.float64)
        return self.all_reduce(tensor, "max").tolist()

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (picklable objects; rank 0's is returned there)."""
        if not self.distributed:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self._collective_device)
        return box[0]

    def all_gather_object(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order."""
        if not self.distributed:
            return [value]
        gathered: list[Any] = [None] * self.size
        dist.all_gather_object(gathered, value)
        return gathered

    def broadcast_tensors(self, tensors: Sequence[Tensor]) -> None:
        """Overwrite `tensors` (in place) with rank 0's values."""
        if not self.distributed:
            return
        for tensor in tensors:
            staged = tensor.detach().to(self._collective_device)
            dist.broadcast(staged, src=0)
            with torch.no_grad():
                tensor.copy_(staged)


SINGLE = World()


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: "gpu[03-05,9],cpu1" -> "gpu03"."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if match is None:
        raise ValueError(f"cannot read the SLURM node list {nodelist!r}")
    prefix, ranges = match.group(1), match.group(2)
    if not ranges:
        return prefix
    return prefix + ranges.split(",", 1)[0].split("-", 1)[0]


def _int_env(name: str, default: int | None = None) -> int | None:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def launch_environment() -> LaunchEnvironment | None:
    """This process's rank and world from the launcher's environment variables, exporting
    MASTER_ADDR / MASTER_PORT / RANK / WORLD_SIZE / LOCAL_RANK where SLURM alone set them
    (torch's env:// initialisation reads those); None when no launcher started several."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return LaunchEnvironment(
            rank=int(os.environ["RANK"]),
            world_size=int(os.environ["WORLD_SIZE"]),
            local_rank=_int_env("LOCAL_RANK", 0) or 0,
            launcher="torchrun",
        )
    tasks = _int_env("SLURM_NTASKS", 1) or 1
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and tasks > 1:
        from submitit.helpers import TorchDistributedEnvironment

        # CUDA_VISIBLE_DEVICES is left as SLURM set it (the node's GPUs): the device is
        # chosen by the local rank (distributed_world), the same way as under torchrun
        env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        return LaunchEnvironment(env.rank, env.world_size, env.local_rank, "submitit")
    # A plain `srun` step. SLURM_STEP_NUM_TASKS, not SLURM_NTASKS: inside an sbatch script
    # with --ntasks=4, a `python -m runners.train` without srun is one process of its own.
    step_tasks = _int_env("SLURM_STEP_NUM_TASKS", 1) or 1
    if step_tasks > 1 and "SLURM_PROCID" in os.environ:
        nodelist = os.environ.get("SLURM_STEP_NODELIST") or os.environ["SLURM_JOB_NODELIST"]
        job_id = _int_env("SLURM_JOB_ID", 0) or 0
        os.environ.setdefault("MASTER_ADDR", first_host(nodelist))
        os.environ.setdefault("MASTER_PORT", str(20000 + job_id % 40000))
        env = LaunchEnvironment(
            rank=int(os.environ["SLURM_PROCID"]),
            world_size=step_tasks,
            local_rank=_int_env("SLURM_LOCALID", 0) or 0,
            launcher="srun",
        )
        os.environ.update(
            RANK=str(env.rank), WORLD_SIZE=str(env.world_size), LOCAL_RANK=str(env.local_rank)
        )
        return env
    return None


def _rank_device(device_name: str, local_rank: int) -> torch.device:
    """The device of a rank: cuda:LOCAL_RANK (modulo the visible devices, for a launcher
    that left each rank one) when the run asks for CUDA and has it, else the CPU. An
    unavailable CUDA is reported by runners.build, on every rank alike."""
    wants_cuda = device_name.startswith("cuda") or device_name == "auto"
    if wants_cuda and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def quiet_unless_main(world: World) -> None:
    """Ranks other than 0 print errors only: their log lines and warnings would repeat rank
    0's, and the run directory's log file is rank 0's."""
    if world.is_main:
        return
    root = logging.getLogger()
    root.setLevel(logging.ERROR)
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
    warnings.simplefilter("ignore")


@contextmanager
def distributed_world(device_name: str = "auto") -> Iterator[World]:
    """The World of this process for the duration of a run: a process group when a launcher
    started several processes (backend nccl on CUDA, gloo on CPU), destroyed at the end;
    SINGLE otherwise."""
    environment = launch_environment()
    if environment is None or environment.world_size <= 1:
        yield SINGLE
        return
    device = _rank_device(device_name, environment.local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = timedelta(seconds=float(os.environ.get("SOBENCH_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S)))
    initialised_here = not dist.is_initialized()
    if initialised_here:
        dist.init_process_group(
            backend,
            init_method="env://",
            rank=environment.rank,
            world_size=environment.world_size,
            timeout=timeout,
        )
    world = World(
        rank=environment.rank,
        size=environment.world_size,
        local_rank=environment.local_rank,
        backend=backend,
        device=device,
    )
    quiet_unless_main(world)
    log.info(
        "data parallel: %d processes (%s, backend %s), rank 0 on %s",
        world.size,
        environment.launcher,
        backend,
        device,
    )
    try:
        yield world
    finally:
        if initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """The torch seed of rank r > 0 of a run (rank 0 keeps the single-process stream): the
    ranks draw their sampled labels (and any other randomness) independently."""
    return (seed * 1_000_003 + 7_919 * rank) % (2**63)
