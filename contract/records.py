"""The record contract: one run directory, runs/<experiment>/<run_id>/, as runners/ write it
and analysis/ read it.

    config.yaml       the resolved config
    metrics.jsonl     one JSON object per log call (non-finite numbers as NaN / Infinity)
    summary.json      status, final and best metrics, time totals, machine load
    environment.json  torch, CUDA, device, CPU threads, load, git commit
    checkpoint.pt     what a resumed run restores (runners.checkpoint)

W&B is a mirror of these files, never the source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
ENVIRONMENT_FILE = "environment.json"

# ----------------------------------------------------------------------------------- statuses
RUNNING = "running"  # training, or killed without a chance to say so (a rerun resumes it)
COMPLETED = "completed"  # the budget was spent
DIVERGED = "diverged"  # a non-finite loss ended it: a result, not an error
FAILED = "failed"  # bad input or an error; `error` says which (a rerun tries again)
INTERRUPTED = "interrupted"  # SIGTERM / SIGINT: checkpointed and stopped; a rerun resumes it
STATUSES = (COMPLETED, DIVERGED, FAILED, INTERRUPTED, RUNNING)
FINAL_STATUSES = (COMPLETED, DIVERGED)  # a rerun skips these unless trainer.force=true
ENDED_BADLY = (DIVERGED, FAILED)  # their last evaluation is not a result
UNFINISHED = (RUNNING, INTERRUPTED)  # their best values are not final yet

# ------------------------------------------------------------------------------- metric names
# every trainer.log_every_steps steps
STEP = "step"  # optimizer steps taken
EPOCH = "epoch"  # step / steps_per_epoch
TRAIN_LOSS = "train/loss"  # the mini-batch loss of the step
TRAIN_LOSS_EMA = "train/loss_ema"  # its exponential moving average (the TNT code's curve)
TRAIN_S = "time/train_s"  # cumulative seconds of the training clock
LR = "lr"
# every evaluation, also
FULL_TRAIN_LOSS = "train/full_loss"  # the loss over the whole training split
TEST_LOSS = "test/loss"
TEST_ACCURACY = "test/accuracy"  # classifiers
TRAIN_ACCURACY = "train/accuracy"  # classifiers
VALID_LOSS = "valid/loss"  # with a validation split (dataset.validation_size > 0)
VALID_ACCURACY = "valid/accuracy"  # classifiers, with a validation split
PROCESS_S = "time/process_s"  # CPU seconds of the process over the training clock's regions
EVAL_S = "time/eval_s"
WARM_START_S = "time/warm_start_s"
WEIGHT_SQ_NORM = "model/weight_sq_norm"  # ||w||^2 over every parameter: the K-BFGS paper
#   plots the full training loss + 0.5 tau ||w||^2 (analysis adds the term)
PEAK_BYTES = "mem/peak_bytes"
OPTIMIZER_STATE_BYTES = "mem/optimizer_state_bytes"
PHASE_PREFIX = "time/phase/"


def phase_metric(phase: str) -> str:
    """The metric of a phase's cumulative seconds: time/phase/<phase>_s."""
    return f"{PHASE_PREFIX}{phase}_s"


# --------------------------------------------------------------------------------- identity
# A run is identified by what decides its result: the resolved config without these, which
# only say where things go, how they are reported or how the process behaves. Both the run
# directory (runners.run_identity) and the analysis's problems and grids use this one list.
NOT_IDENTITY_NODES = ("hydra", "logger", "paths")
NOT_IDENTITY_KEYS = (
    "trainer.force",
    "trainer.checkpoint_every_epochs",
    "trainer.progress_bar",
    "trainer.lock_wait_s",
    "dataset.local_path",  # which file the data were read from, not what they are
    "dataset.download",  # whether a missing file may be downloaded
)


# Settings added after runs were recorded, at the value that computes what those runs computed:
# at that value they are left out of the identity, so that earlier runs keep their directory
# (and are resumed or skipped, not run again).
IDENTITY_NEUTRAL_DEFAULTS: dict[str, object] = {
    "dataset.validation_size": 0,
    "dataset.split_seed": 0,
    "trainer.evaluate_test": True,
    "trainer.precision": "float32",  # no autocast (runners.closure): the exact arithmetic
    "tuning": None,  # a node: every value null, not a tuning run (runners.tune)
}


def is_identity_key(dotted: str) -> bool:
    """Whether a config key ("trainer.batch_size", "logger.project") is part of the identity."""
    node = dotted.split(".", 1)[0]
    return node not in NOT_IDENTITY_NODES and dotted not in NOT_IDENTITY_KEYS


# ------------------------------------------------------------------------------ machine load
# summary.json's "machine_load": the 1-minute load average (os.getloadavg) sampled at the start
# and at every evaluation of the run, and the machine's core count. The run's own threads
# count in it, so a machine busy with this run alone sits near its core count; above it,
# other processes took turns on the cores, and the run's timings (and ratios between runs)
# are not to be trusted.
MACHINE_LOAD = "machine_load"
LOAD_KEYS = ("cpu_count", "load_1min_mean", "load_1min_max", "samples")


def overloaded(load: dict | None) -> bool:
    """Whether the machine was busier than its cores on average during the run."""
    if not load or not load.get("cpu_count") or load.get("load_1min_mean") is None:
        return False
    return float(load["load_1min_mean"]) > float(load["cpu_count"])


# ---------------------------------------------------------------------------------- baseline
BASELINE_OPTIMIZER = "sgd"  # ratios of time per step are taken to SGD with momentum


# ------------------------------------------------------------------------------- metric lines
@dataclass(frozen=True)
class MetricLines:
    """The records of a metrics.jsonl text, and how many lines could not be read."""

    records: list[dict]
    unreadable: int  # a torn last line after a kill mid-write, or a damaged line


def parse_metric_lines(text: str) -> MetricLines:
    """Every readable record of a metrics.jsonl text. A kill can tear the last line in the
    middle of a write; such a line (and any other that is not a JSON object) is counted and
    left out, never an error. Python's json reads the NaN / Infinity the runner writes."""
    records, unreadable = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            unreadable += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            unreadable += 1
    return MetricLines(records, unreadable)
