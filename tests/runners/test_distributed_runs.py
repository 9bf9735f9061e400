"""Data-parallel runs (runners.distributed): real `torchrun --standalone --nproc-per-node=2`
runs with gloo on the CPU. One run on two processes records once (rank 0), in the run
directory of the one-process run; a stopped or killed two-process run resumes to exactly the
records of an uninterrupted one, and on one process too; each rank trains on its contiguous
slice of every global mini-batch of the same seeded shuffle."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data.augment import RandomCropFlip
from data.tensors import ShuffledBatches, rank_slice
from runners.distributed import SINGLE, World, first_host, launch_environment
from runners.evaluate import rank_batches
from tests.conftest import QUICK, REPO, read_metrics, read_summary, run_dirs, run_train
from tests.runners.processes import (
    DEADLINE_S,
    RESUMABLE,
    TrainProcess,
    assert_no_duplicate_or_gap,
    has_checkpoint,
    metric_lines,
    steps_of,
)

PROCESSES = 2
TIMEOUT_S = 180.0  # every subprocess: nothing may hang the suite


def _environment() -> dict[str, str]:
    # One thread per process, as torchrun sets it: the one-process runs compared with
    # two-process ones compute every batch with the same arithmetic.
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun_command(*overrides: str, runs_dir: Path, processes: int = PROCESSES) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "runners.train",
        f"paths.runs_dir={runs_dir}",
        *overrides,
    ]


def torchrun(*overrides: str, runs_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        torchrun_command(*overrides, runs_dir=runs_dir),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=_environment(),
    )


def start_torchrun(*overrides: str, runs_dir: Path) -> TrainProcess:
    """torchrun in a session of its own (so that a test can kill the whole group)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    out = runs_dir.parent / f"{runs_dir.name}-torchrun.out"
    with out.open("wb") as stream:
        process = subprocess.Popen(
            torchrun_command(*overrides, runs_dir=runs_dir),
            cwd=REPO,
            stdout=stream,
            stderr=subprocess.STDOUT,
            env=_environment(),
            start_new_session=True,
        )
    return TrainProcess(process, out)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc: torchrun's ranks)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def kill_all(run: TrainProcess) -> None:
    """SIGKILL torchrun and its ranks at once. torchrun starts every rank in a session of its
    own (so that it can signal each rank's group), hence each group is killed."""
    for group in [*children(run.process.pid), run.process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


def end_group(run: TrainProcess) -> None:
    """Whatever a test left running, torchrun and its ranks: killed."""
    if run.process.poll() is None:
        kill_all(run)
    run.process.wait(timeout=DEADLINE_S)


def stop_after_a_checkpoint(runs_dir: Path, signum: int) -> TrainProcess:
    """Start the resumable run on two processes and, once a checkpoint and a step record
    after it exist, send `signum`: SIGTERM to torchrun (which passes it to its ranks), or
    SIGKILL to torchrun and every rank."""
    run = start_torchrun(*RESUMABLE, runs_dir=runs_dir)
    try:
        run.wait_for(lambda: has_checkpoint(runs_dir), "a checkpoint")
        lines = metric_lines(runs_dir)
        run.wait_for(lambda: metric_lines(runs_dir) > lines, "a step record after it")
        if signum == signal.SIGKILL:
            kill_all(run)
        else:
            run.process.send_signal(signum)
        run.process.wait(timeout=DEADLINE_S)
    finally:
        end_group(run)
    return run


@pytest.fixture(scope="module")
def two_process_reference(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The records of the resumable run on two processes, from start to end."""
    runs = tmp_path_factory.mktemp("two-process-uninterrupted") / "runs"
    result = torchrun(*RESUMABLE, runs_dir=runs)
    assert result.returncode == 0, result.stdout + result.stderr
    (run_dir,) = run_dirs(runs)
    return read_metrics(run_dir)


# ------------------------------------------------------------------------------- real runs
def test_a_two_process_run_records_once_in_the_one_process_runs_directory(
    tmp_path: Path,
) -> None:
    two = torchrun(*QUICK, runs_dir=tmp_path / "two")
    output = two.stdout + two.stderr
    assert two.returncode == 0, output
    assert "Traceback" not in output
    assert output.count("completed after") == 1  # rank 1 prints nothing but errors
    one = subprocess.run(
        [sys.executable, "-m", "runners.train", f"paths.runs_dir={tmp_path / 'one'}", *QUICK],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=_environment(),
    )
    assert one.returncode == 0, one.stdout + one.stderr
    (two_dir,) = run_dirs(tmp_path / "two")
    (one_dir,) = run_dirs(tmp_path / "one")
    assert two_dir.name == one_dir.name  # the world size is not part of the identity

    summary = read_summary(two_dir)
    assert summary["status"] == "completed" and summary["world_size"] == PROCESSES
    assert read_summary(one_dir)["world_size"] == 1
    environment = (two_dir / "environment.json").read_text()
    assert f'"world_size": {PROCESSES}' in environment
    two_metrics, one_metrics = read_metrics(two_dir), read_metrics(one_dir)
    assert steps_of(two_metrics) == steps_of(one_metrics)  # each record once: rank 0 wrote
    # Step 0's evaluation, at the same initial weights, split over the ranks in whole
    # batches and summed: one process's numbers (up to the order of a float64 sum).
    first_two, first_one = two_metrics[0], one_metrics[0]
    for key in ("train/full_loss", "test/loss", "test/accuracy", "train/accuracy"):
        assert first_two[key] == pytest.approx(first_one[key], rel=1e-12), key
    names = {path.name for path in two_dir.iterdir()}
    assert "wandb" not in names and not list(two_dir.glob("*.out"))


def test_a_stopped_two_process_run_resumes_on_two_or_one_processes(
    tmp_path: Path, two_process_reference: list[dict]
) -> None:
    """One stopped run (SIGTERM after a checkpoint), copied: resumed on 2 processes it ends
    with the uninterrupted 2-process records exactly; resumed on 1 process it completes
    with every step recorded once (the values after the stop are one process's)."""
    runs = tmp_path / "runs"
    run = stop_after_a_checkpoint(runs, signal.SIGTERM)
    output = run.output()
    assert "SIGTERM at step" in output and "rerun the same command to resume" in output
    (run_dir,) = run_dirs(runs)
    summary = read_summary(run_dir)
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM"
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert checkpoint["progress"]["step"] == summary["steps"]  # every rank stopped there
    assert len(checkpoint["random_ranks"]) == PROCESSES
    one_runs = tmp_path / "one-process"
    shutil.copytree(runs, one_runs)

    resumed = torchrun(*RESUMABLE, runs_dir=runs)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"at step {summary['steps']}" in resumed.stdout + resumed.stderr
    assert read_summary(run_dir)["status"] == "completed"
    assert_no_duplicate_or_gap(read_metrics(run_dir), two_process_reference)

    on_one = run_train(*RESUMABLE, runs_dir=one_runs, timeout=TIMEOUT_S)
    output = on_one.stdout + on_one.stderr
    assert on_one.returncode == 0, output
    assert f"at step {summary['steps']}" in output
    (one_dir,) = run_dirs(one_runs)
    one_summary = read_summary(one_dir)
    assert one_summary["status"] == "completed" and one_summary["world_size"] == 1
    assert steps_of(read_metrics(one_dir)) == steps_of(two_process_reference)


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_to_the_uninterrupted_records(
    tmp_path: Path, two_process_reference: list[dict]
) -> None:
    runs = tmp_path / "runs"
    stop_after_a_checkpoint(runs, signal.SIGKILL)
    (run_dir,) = run_dirs(runs)
    assert read_summary(run_dir)["status"] == "running"  # killed: no chance to say so
    resumed = torchrun(*RESUMABLE, runs_dir=runs)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output
    assert "resuming" in output and "Traceback" not in output
    assert_no_duplicate_or_gap(read_metrics(run_dir), two_process_reference)


# ------------------------------------------------------------------------------ the slices
@pytest.mark.parametrize(("size", "world_size"), [(64, 2), (10, 3), (7, 4), (5, 5), (1000, 8)])
def test_rank_slices_are_contiguous_array_split_parts_of_the_whole(
    size: int, world_size: int
) -> None:
    parts = [rank_slice(size, rank, world_size) for rank in range(world_size)]
    sizes = [part.stop - part.start for part in parts]
    expected = [len(chunk) for chunk in torch.arange(size).tensor_split(world_size)]
    assert sizes == expected  # np.array_split's sizes (and torch.tensor_split's)
    assert parts[0].start == 0 and parts[-1].stop == size
    assert all(a.stop == b.start for a, b in itertools.pairwise(parts))


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("augment", [False, True])
def test_the_ranks_batches_make_up_the_global_batch_of_every_epoch(
    world_size: int, augment: bool
) -> None:
    inputs = torch.rand(50, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    targets = torch.arange(50)

    def batches(rank: int, size: int) -> ShuffledBatches:
        augmentation = RandomCropFlip(2, [0.0, 0.0, 0.0]) if augment else None
        return ShuffledBatches(inputs, targets, 16, 4, augmentation, rank, size)

    whole = batches(0, 1)
    ranks = [batches(rank, world_size) for rank in range(world_size)]
    assert all(part.steps_per_epoch == whole.steps_per_epoch for part in ranks)
    for epoch in (-1, 0, 1, 2):  # the warm start's order, and the epochs'
        for index in range(whole.steps_per_epoch):
            global_inputs, global_targets = whole.epoch(epoch).batch(index)
            pieces = [part.epoch(epoch).batch(index) for part in ranks]
            torch.testing.assert_close(torch.cat([x for x, _ in pieces]), global_inputs)
            torch.testing.assert_close(torch.cat([y for _, y in pieces]), global_targets)


def test_a_global_batch_smaller_than_the_world_is_refused() -> None:
    with pytest.raises(ValueError, match="smaller than the 4 processes"):
        ShuffledBatches(torch.zeros(10, 1), torch.zeros(10), 3, 0, None, 0, 4)


def test_evaluation_batches_are_shared_out_whole_and_in_order() -> None:
    total, batch_size = 10_000, 2000
    assert list(rank_batches(total, batch_size, SINGLE)) == list(range(0, total, batch_size))
    for size in (2, 3, 8):
        shares = [list(rank_batches(total, batch_size, World(r, size))) for r in range(size)]
        assert list(itertools.chain(*shares)) == list(range(0, total, batch_size))


# ------------------------------------------------------------------------- the environment
def test_slurm_node_lists_give_their_first_host() -> None:
    assert first_host("gpu[03-05,9],cpu1") == "gpu03"
    assert first_host("node7") == "node7"
    assert first_host("a-b[1,2]") == "a-b1"


def unset(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Unset the variables, and have monkeypatch restore them, including to unset: what the
    code under test exports must not reach the other tests' subprocesses."""
    for name in names:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


LAUNCHER_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "SUBMITIT_EXECUTOR",
    "SLURM_STEP_NUM_TASKS",
    "SLURM_NTASKS",
)


def test_a_plain_srun_step_exports_torchs_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    unset(monkeypatch, *LAUNCHER_VARIABLES)
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "8")
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "gpu[12-15]")
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    environment = launch_environment()
    assert environment is not None and environment.launcher == "srun"
    assert (environment.rank, environment.world_size, environment.local_rank) == (5, 8, 1)
    assert os.environ["MASTER_ADDR"] == "gpu12" and os.environ["MASTER_PORT"] == "20123"
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"]) == ("5", "8")


def test_no_launcher_means_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    unset(monkeypatch, *LAUNCHER_VARIABLES)
    monkeypatch.setenv("SLURM_NTASKS", "4")  # an sbatch script's python, without srun
    assert launch_environment() is None
