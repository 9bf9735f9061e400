"""The collectives of data-parallel training on torch.distributed, each a no-op without one.

Data parallel here means: R processes (ranks) hold the same weights and optimizer state; each
step, rank r evaluates its own slice of n_r examples of the global mini-batch of
N = sum_r n_r, and every method must then be the SAME algorithm as one process on the whole
global batch (docs/optimizers.md, "Data parallel"). A mean over the global batch is the
weighted mean of the ranks' means,

    mean_N x = sum_r (n_r / N) mean_{n_r} x,

so the slices may differ in size. Everything here switches on by itself when
`torch.distributed.is_initialized()` and the world size is > 1; otherwise (no process group,
or one rank) every function returns at once and the caller keeps its single-process code
path, bit for bit.

    world()                          (rank, size): (0, 1) without a process group
    is_distributed()                 a process group with more than one rank
    weighted_mean_(tensors, n)       in place: t <- sum_r (n_r / N) t_r, ONE all-reduce per
                                     dtype (the tensors flattened into one buffer, with n_r
                                     riding along as one more element, so N needs no
                                     collective of its own)
    global_count(n)                  N = sum_r n_r (one all-reduce, read on the host)
    all_gather_rows(tensors)         the rows of every rank, in rank order, for tensors whose
                                     first dimension is this rank's n_r (padded to the largest
                                     count, gathered, stripped): one all-gather of the counts
                                     and one per dtype
    assign_by_cost(costs)            an owner rank for each work item, balanced by cost:
                                     largest first to the least-loaded rank (KAISA's greedy
                                     assignment of inverses); deterministic, so every rank
                                     computes the same assignment without communicating
    broadcast_from_owners(items, o)  each item's tensors take their owner's values: one
                                     broadcast per (owner, dtype), the items coalesced

Every collective runs inside `phase("communication")` (optimizers.phases), so the runner's
clock and the benchmark show its time separately from the computation around it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from optimizers.phases import phase


def is_distributed() -> bool:
    """Whether a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without a process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def _buffer_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32 for the sums: n_r * t in bfloat16 would round the count (exact only
    up to 256) and the products; float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


def _by_dtype(tensors: Sequence[Tensor]) -> dict[torch.dtype, list[int]]:
    groups: dict[torch.dtype, list[int]] = {}
    for index, tensor in enumerate(tensors):
        groups.setdefault(tensor.dtype, []).append(index)
    return groups


def weighted_mean_(tensors: Sequence[Tensor], local_count: int) -> None:
    """t <- sum_r (n_r / N) t_r in place for every tensor, with n_r = `local_count` and
    N = sum_r n_r: the global batch's mean from the ranks' means over their slices.

    The tensors of a dtype are flattened into one buffer [n_r * t..., n_r] (at least float32),
    summed over the ranks by one all-reduce and divided by its last element, N: one collective
    per dtype and call, and the global count costs no collective of its own."""
    if not is_distributed() or not tensors:
        return
    with phase("communication"):
        for indices in _by_dtype(tensors).values():
            members = [tensors[index] for index in indices]
            dtype = _buffer_dtype(members[0].dtype)
            device = members[0].device
            flat = [t.reshape(-1).to(dtype) for t in members]
            count = torch.full((1,), float(local_count), dtype=dtype, device=device)
            buffer = torch.cat([*flat, count])
            buffer[:-1].mul_(local_count)
            dist.all_reduce(buffer)
            buffer[:-1].div_(buffer[-1])
            offset = 0
            for tensor in members:
                size = tensor.numel()
                tensor.copy_(buffer[offset : offset + size].view_as(tensor))
                offset += size


def global_count(local_count: int, device: torch.device | None = None) -> int:
    """N = sum_r n_r: one all-reduce of the local count, read on the host; `local_count`
    without a process group."""
    if not is_distributed():
        return local_count
    with phase("communication"):
        count = torch.tensor([local_count], dtype=torch.int64, device=device)
        dist.all_reduce(count)
        return int(count.item())


def _gather_counts(local_count: int, device: torch.device) -> list[int]:
    _, size = world()
    mine = torch.tensor([local_count], dtype=torch.int64, device=device)
    counts = [torch.empty_like(mine) for _ in range(size)]
    dist.all_gather(counts, mine)
    return [int(count.item()) for count in counts]


def all_gather_rows(tensors: Sequence[Tensor]) -> list[Tensor]:
    """Every rank's rows of each tensor, concatenated in rank order: for tensors (n_r, ...)
    sharing this rank's row count n_r, tensors (N, ...) with N = sum_r n_r. The slices may
    differ in size: each dtype's tensors are flattened per row into one (n_r, width) buffer,
    padded to the largest count, gathered in one all-gather and stripped. The tensors
    themselves without a process group."""
    if not is_distributed() or not tensors:
        return list(tensors)
    local_count = tensors[0].shape[0]
    if any(tensor.shape[0] != local_count for tensor in tensors):
        raise ValueError("all_gather_rows needs tensors with the same number of rows")
    device = tensors[0].device
    gathered: list[Tensor | None] = [None] * len(tensors)
    with phase("communication"):
        counts = _gather_counts(local_count, device)
        largest = max(counts)
        for indices in _by_dtype(tensors).values():
            members = [tensors[index] for index in indices]
            widths = [tensor.shape[1:].numel() for tensor in members]
            rows = torch.cat([t.reshape(local_count, -1) for t in members], dim=1)
            padded = rows.new_zeros(largest, rows.shape[1])
            padded[:local_count] = rows
            parts = [torch.empty_like(padded) for _ in counts]
            dist.all_gather(parts, padded)
            full = torch.cat([part[:count] for part, count in zip(parts, counts, strict=True)])
            offset = 0
            for index, tensor, width in zip(indices, members, widths, strict=True):
                piece = full[:, offset : offset + width]
                # contiguous: a strided view into the shared buffer would change the
                # alignment, and with it the last bit of MKL's products, between cases
                gathered[index] = piece.reshape(full.shape[0], *tensor.shape[1:]).contiguous()
                offset += width
    return gathered  # type: ignore[return-value]


def assign_by_cost(costs: Sequence[float], size: int | None = None) -> list[int]:
    """The owner rank of each item: items by decreasing cost (ties by index), each to the rank
    with the least cost so far (ties by rank), as KAISA assigns its inverses. Deterministic,
    so every rank computes the same assignment; all zeros for one rank."""
    if size is None:
        size = world()[1]
    loads = [0.0] * size
    owners = [0] * len(costs)
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        rank = min(range(size), key=lambda r: (loads[r], r))
        owners[index] = rank
        loads[rank] += costs[index]
    return owners


def broadcast_from_owners(items: Sequence[Sequence[Tensor]], owners: Sequence[int]) -> None:
    """Each item's tensors take their owner's values, in place: the owner passes its results,
    every other rank tensors of the same shapes and dtypes (their values are overwritten).
    All items of an owner and dtype are flattened into one buffer: one broadcast per (owner,
    dtype), at most world size x dtypes collectives per call."""
    if not is_distributed():
        return
    rank, size = world()
    with phase("communication"):
        for owner in range(size):
            tensors = [t for item, o in zip(items, owners, strict=True) if o == owner for t in item]
            for indices in _by_dtype(tensors).values():
                members = [tensors[index] for index in indices]
                if owner == rank:
                    buffer = torch.cat([t.reshape(-1) for t in members])
                else:
                    total = sum(t.numel() for t in members)
                    buffer = members[0].new_empty(total)
                dist.broadcast(buffer, src=owner)
                if owner == rank:
                    continue
                offset = 0
                for tensor in members:
                    tensor.copy_(buffer[offset : offset + tensor.numel()].view_as(tensor))
                    offset += tensor.numel()
