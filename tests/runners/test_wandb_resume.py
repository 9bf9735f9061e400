"""The W&B copy of a run never loses rows: after a hard kill (SIGKILL, whatever W&B had not
written yet is lost) or a SIGTERM, and the resume, the run directory holds exactly one
offline W&B run, and its history holds the same rows as metrics.jsonl, read back with
wandb's own reader."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.conftest import read_metrics, run_dirs, run_train
from tests.runners.processes import RESUMABLE, TrainProcess, has_checkpoint, metric_lines
from tests.runners.wandb_files import history_rows, offline_runs, wandb_records

WANDB_RUN = (*RESUMABLE, "logger=wandb")
W_AND_B_KEYS = ("_step", "_runtime", "_timestamp")


def rows_by_step(records: list[dict]) -> dict[int, dict]:
    """metrics.jsonl's records merged per step, as W&B merges the calls logged at one step."""
    rows: dict[int, dict] = {}
    for record in records:
        rows.setdefault(record["step"], {}).update(
            {key: value for key, value in record.items() if key != "step"}
        )
    return rows


# SIGTERM's checkpoint-at-the-signal path is tested locally in test_signals.py; here it is
# slow, SIGKILL (no chance to checkpoint) is the hard case for W&B's rows
@pytest.mark.parametrize(
    "signum", [signal.SIGKILL, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)]
)
def test_wandb_and_the_local_records_hold_the_same_rows(tmp_path: Path, signum: int) -> None:
    runs = tmp_path / "runs"
    run = TrainProcess.start(*WANDB_RUN, runs_dir=runs)
    run.wait_for(lambda: has_checkpoint(runs), "a checkpoint")
    lines = metric_lines(runs)
    run.wait_for(lambda: metric_lines(runs) > lines, "a step record after it")
    if signum == signal.SIGKILL:
        os.kill(run.process.pid, signum)
        run.wait()
    else:
        assert run.signal(signum) == 128 + signum

    resumed = run_train(*WANDB_RUN, runs_dir=runs)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    (run_dir,) = run_dirs(runs)
    (offline,) = offline_runs(run_dir)  # the earlier attempt's offline run was replaced
    history = {
        row["_step"]: {key: value for key, value in row.items() if key not in W_AND_B_KEYS}
        for row in history_rows(wandb_records(offline))
    }
    local = rows_by_step(read_metrics(run_dir))
    assert history.keys() == local.keys() and len(local) > 10
    for step, row in local.items():
        assert history[step].keys() == row.keys(), step
        for key, value in row.items():
            assert history[step][key] == pytest.approx(value, rel=1e-6), (step, key)
