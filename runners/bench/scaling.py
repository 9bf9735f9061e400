"""Data-parallel scaling: `python -m runners.bench --nproc G`.

The benchmark first runs as usual in this process (one process, the whole global batch), then
again as G ranks of a data-parallel group at the same global batch, each rank on its slice of
every mini-batch (runners.distributed: gloo on CPU, NCCL on CUDA, one GPU per rank), launched
by torchrun (`python -m torch.distributed.run --standalone --nproc-per-node G -m
runners.bench ...`). Rank 0 writes the ranks' table; this process reads it and reports, per
problem and optimizer,

    speed-up     t_1 / t_G           (time per step, 1 process over G processes)
    efficiency   t_1 / (G t_G)       (1: perfect scaling at a fixed global batch)

and the G-process run's `communication` phase (the collectives of runners.closure and
optimizers.distributed). On a CPU the G ranks share its cores: each rank gets cores / G
threads (OMP_NUM_THREADS), so the comparison is of the same hardware split G ways. The two
timings come from two processes, so they move with the machine's load between them more
than the ratios to SGD-m measured within one process do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

RANKS_TABLE = "bench.csv"  # what rank 0 of the data-parallel run writes


def child_arguments(argv: list[str]) -> list[str]:
    """`argv` without --nproc, --out and --no-overhead (the ranks get their own)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--nproc", "--out"):
            skip = True
            continue
        if arg.startswith(("--nproc=", "--out=")) or arg == "--no-overhead":
            continue
        kept.append(arg)
    return kept


def rank_threads(nproc: int) -> int:
    """Threads of each rank on a CPU: its share of the cores."""
    return max(1, (os.cpu_count() or 1) // nproc)


def run_ranks(argv: list[str], nproc: int, timeout_s: float | None = None) -> pd.DataFrame:
    """The benchmark run as `nproc` data-parallel ranks under torchrun; rank 0's table."""
    with tempfile.TemporaryDirectory(prefix="sobench-ranks-") as out:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", "runners.bench",
            *child_arguments(argv), "--no-overhead", "--out", out,
        ]  # fmt: skip
        environment = {**os.environ, "OMP_NUM_THREADS": str(rank_threads(nproc))}
        done = subprocess.run(command, env=environment, timeout=timeout_s, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"the {nproc}-process benchmark failed (exit {done.returncode}): {command}"
            )
        return pd.read_csv(Path(out) / RANKS_TABLE)


def scaling_tables(
    single: dict[str, pd.DataFrame], ranks: pd.DataFrame, nproc: int
) -> dict[str, pd.DataFrame]:
    """Per problem: each optimizer's time per step with 1 and `nproc` processes, the speed-up,
    the efficiency, and the `nproc`-process run's communication per step."""
    tables = {}
    for problem, table in single.items():
        parallel = ranks[ranks["problem"] == problem].set_index("optimizer")
        rows = []
        for _, row in table.iterrows():
            name = row["optimizer"]
            if name not in parallel.index:
                continue
            one, many = float(row["ms/step"]), float(parallel.loc[name, "ms/step"])
            rows.append(
                {
                    "optimizer": name,
                    "1 process ms/step": one,
                    f"{nproc} processes ms/step": many,
                    "speed-up": one / many,
                    "efficiency": one / (nproc * many),
                    "communication ms": float(parallel.loc[name].get("communication ms", 0.0)),
                }
            )
        tables[problem] = pd.DataFrame(rows)
    return tables


def scaling_markdown(tables: dict[str, pd.DataFrame], nproc: int) -> str:
    lines = [
        f"## Data parallel: {nproc} processes at the same global batch",
        "",
        "Speed-up t_1 / t_G and efficiency t_1 / (G t_G) of the time per step, the G ranks "
        "each on its slice of every global mini-batch (runners.bench.scaling); "
        "`communication ms` is the G-process run's collectives per step.",
        "",
    ]
    for problem, table in tables.items():
        lines += [f"### {problem}", "", table.to_markdown(index=False, floatfmt=".2f"), ""]
    return "\n".join(lines)
