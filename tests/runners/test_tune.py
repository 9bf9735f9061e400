"""runners.tune with real Optuna studies, real runs and real processes killed for real: a
killed tuning command rerun ends with exactly K trials, none run twice; two workers on one
storage share K trials; a bad search space or a missing validation split is one message
before any trial; trials never evaluate on the test split; the best setting is rerun."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from contract.records import COMPLETED
from tests.conftest import QUICK, REPO, read_metrics, read_summary, run_dirs
from tests.runners.processes import TrainProcess

TRIALS = 3
# the MNIST autoencoder on synthetic data, 4 epochs of 12 steps a trial: slow enough to be
# killed between its first checkpoint and its end
PROBLEM = (
    *QUICK,
    "model=mnist_ae",
    "dataset.train_size=1024",
    "dataset.validation_size=256",
    "trainer.max_epochs=4",
    "trainer.log_every_steps=5",
    "optimizer=sgd",
)
TIMEOUT_S = 300


def run_tune(*arguments: str, runs_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runners.tune", f"paths.runs_dir={runs_dir}", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def tuning_of(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text()).get("tuning") or {}


def trial_dirs(runs_dir: Path) -> dict[int, Path]:
    dirs = [d for d in run_dirs(runs_dir) if tuning_of(d).get("role") == "trial"]
    numbers = [tuning_of(d)["trial"] for d in dirs]
    assert len(numbers) == len(set(numbers)), f"a trial number has two run directories: {dirs}"
    return dict(zip(numbers, dirs, strict=True))


def final_dirs(runs_dir: Path) -> list[Path]:
    return [d for d in run_dirs(runs_dir) if tuning_of(d).get("role") == "final"]


def the_study(runs_dir: Path, journal: bool = False) -> optuna.Study:
    (study_dir,) = (runs_dir / "default" / "studies").iterdir()
    if journal:
        backend = optuna.storages.journal.JournalFileBackend(str(study_dir / "study.journal"))
        storage: object = optuna.storages.JournalStorage(backend)
    else:
        storage = f"sqlite:///{study_dir / 'study.db'}"
    return optuna.load_study(study_name=study_dir.name, storage=storage)


def assert_each_record_once(metrics: list[dict]) -> None:
    """No step logged twice with the same keys, steps in order: nothing ran twice."""
    keys = [(record["step"], tuple(sorted(record))) for record in metrics]
    assert len(keys) == len(set(keys)), "a record is in the metrics twice"
    steps = [record["step"] for record in metrics]
    assert steps == sorted(steps)


def test_a_killed_study_resumes_with_exactly_k_trials(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    arguments = (*PROBLEM, f"tune.trials={TRIALS}", "tune.seeds=1")
    worker = TrainProcess.start(*arguments, runs_dir=runs_dir, module="runners.tune")

    def second_trial_checkpointed() -> bool:
        trial = trial_dirs(runs_dir).get(1) if any(runs_dir.rglob("config.yaml")) else None
        return trial is not None and (trial / "checkpoint.pt").is_file()

    worker.wait_for(second_trial_checkpointed, "a checkpoint of trial 1")
    assert worker.signal(signal.SIGKILL) == -signal.SIGKILL
    killed = read_summary(trial_dirs(runs_dir)[1])
    assert killed["status"] == "running", "trial 1 ended before the kill: the test proves nothing"

    rerun = run_tune(*arguments, runs_dir=runs_dir)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    output = rerun.stderr + rerun.stdout
    assert "trial 1 of sgd" in output and "resumed: its worker was killed" in output
    assert "resuming" in output and "from checkpoint.pt" in output  # not restarted

    study = the_study(runs_dir)
    assert [t.number for t in study.trials] == list(range(TRIALS))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    trials = trial_dirs(runs_dir)
    assert sorted(trials) == list(range(TRIALS))
    for number, run_dir in trials.items():
        summary = read_summary(run_dir)
        assert summary["status"] == COMPLETED and summary["attempt"] == 0
        metrics = read_metrics(run_dir)
        assert_each_record_once(metrics)
        # trials never see the test split: no test metric is even computed
        assert not [key for record in metrics for key in record if key.startswith("test/")]
        assert any("valid/loss" in record for record in metrics)
        assert study.trials[number].value == min(
            r["valid/loss"] for r in metrics if "valid/loss" in r
        )
    # trial 1 resumed from its checkpoint and spent the whole budget, as the others did
    assert read_summary(trials[1])["steps"] == read_summary(trials[0])["steps"]
    (final,) = final_dirs(runs_dir)
    best = min(study.trials, key=lambda t: t.value)
    final_config = yaml.safe_load((final / "config.yaml").read_text())
    assert final_config["optimizer"]["lr"] == pytest.approx(best.params["lr"], rel=1e-12)
    assert final_config["tuning"]["trials"] == TRIALS
    assert any("test/loss" in record for record in read_metrics(final))

    again = run_tune(*arguments, runs_dir=runs_dir)  # a finished study: nothing runs
    assert again.returncode == 0, again.stdout + again.stderr
    output = again.stdout + again.stderr
    assert "] trial " not in output, "a trial ran again"
    assert "already completed: skipped" in output  # the final run, found done
    assert len(the_study(runs_dir).trials) == TRIALS


@pytest.mark.slow  # make test-slow; its siblings here stay in make test (15-minute budget)
def test_two_workers_share_one_study(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    trials = 4
    arguments = (*PROBLEM, f"tune.trials={trials}", "tune.seeds=0", "tune.storage=journal")
    workers = [
        TrainProcess.start(*arguments, runs_dir=runs_dir, name=f"w{i}", module="runners.tune")
        for i in range(2)
    ]
    assert [worker.wait() for worker in workers] == [0, 0], [w.output() for w in workers]
    study = the_study(runs_dir, journal=True)
    assert len(study.trials) == trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    ran = [
        {
            int(line.split("trial ")[1].split(" ")[0])
            for line in w.output().splitlines()
            if " of sgd: " in line and "] trial " in line
        }
        for w in workers
    ]
    assert ran[0].isdisjoint(ran[1]), f"a trial ran in both workers: {ran}"
    assert ran[0] | ran[1] == set(range(trials))
    for run_dir in trial_dirs(runs_dir).values():
        assert read_summary(run_dir)["attempt"] == 0
        assert_each_record_once(read_metrics(run_dir))


def bad_space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


# one bad space through the real command; every kind of bad range is refused in-process,
# by the same check, in tests/runners/test_search_spaces.py
@pytest.mark.parametrize(
    ("space", "named"),
    [
        (
            "space:\n  learning_rate: {distribution: log_uniform, low: 1.0e-3, high: 1.0}\n",
            "space.learning_rate is not an argument of torch.optim.SGD",
        ),
    ],
)
def test_a_bad_search_space_fails_before_any_trial(tmp_path: Path, space: str, named: str) -> None:
    runs_dir = tmp_path / "runs"
    result = run_tune(*PROBLEM, f"tune.space={bad_space(tmp_path, space)}", runs_dir=runs_dir)
    assert result.returncode == 2, result.stdout + result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert not run_dirs(runs_dir), "a trial ran"


def test_tuning_without_a_validation_split_is_refused(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    without = [item for item in PROBLEM if not item.startswith("dataset.validation_size")]
    result = run_tune(*without, runs_dir=runs_dir)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "dataset.validation_size" in result.stderr and "never on the test split" in result.stderr
    assert not run_dirs(runs_dir)
