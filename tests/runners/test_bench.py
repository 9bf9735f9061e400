"""The cost benchmark (runners.bench): the schedule weights of each kind of step, that a step
timed as a kind really is of that kind, the weighted means, and an end-to-end run on a small
autoencoder (every optimizer builds from its YAML, the table has the ratio to SGD-m, the
per-phase breakdown, memory; the markdown page, CSV and figure are written; the harness
overhead is measured), the command line's help and its check of optimizer names, and the log
of each problem's start and end. Timings themselves are not asserted: the benchmark is not a
test."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from runners.bench import BenchSettings, benchmark, main
from runners.bench.problems import PROBLEMS, BenchProblem, build
from runners.bench.run import ALL_OPTIMIZERS
from runners.bench.timing import Contender, step_kinds
from tests.conftest import CONF_DIR, REPO

TINY = BenchProblem(
    "tiny_ae", "mnist_ae", "synthetic", 8, (2, 4), overrides=("model.encoder_sizes=[16,8]",)
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """OpenMP threads fight other processes for a shared machine's cores; nothing here
    measures speed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def contender(optimizer: str, schedule: tuple[int, int] = (2, 4)) -> Contender:
    built = build(TINY, optimizer, schedule, "cpu")
    epoch = built.batches.epoch(0)
    return Contender(optimizer, built, [epoch.batch(i) for i in range(2)])


@pytest.mark.parametrize(
    ("optimizer", "schedule", "expected"),
    [
        ("kfac", (10, 100), {"refresh": 1 / 100, "statistics": 9 / 100, "plain": 90 / 100}),
        ("tnt", (1, 20), {"refresh": 1 / 20, "statistics": 19 / 20}),
        ("kbfgs", (1, 1), {"refresh": 1.0}),
        ("tengrad", (10, 100), {"refresh": 1 / 100, "plain": 99 / 100}),  # T1 = T2 = 100
        ("sgd", (10, 100), {"plain": 1.0}),
    ],
)
def test_each_kind_of_step_is_weighted_by_its_share_of_the_schedule(
    optimizer: str, schedule: tuple[int, int], expected: dict[str, float]
) -> None:
    kinds = step_kinds(build(TINY, optimizer, schedule, "cpu").optimizer)
    assert {kind: weight for kind, (_, weight) in kinds.items()} == pytest.approx(expected)
    assert sum(weight for _, weight in kinds.values()) == pytest.approx(1.0)


def test_a_step_timed_as_a_kind_is_of_that_kind() -> None:
    kfac = contender("kfac")
    kfac.warm_up(1)
    schedule = kfac.built.optimizer.state["schedule"]
    for kind, statistics_expected in (("plain", 0), ("statistics", 1), ("refresh", 1)):
        before = schedule["statistics_updates"]
        first_layer = kfac.built.optimizer.layers[0].weight
        inverse = kfac.built.optimizer.state[first_layer]
        inverse_before = inverse["activation_factor_inverse"].clone()
        kfac.step(kfac.kinds[kind][0])
        assert schedule["statistics_updates"] - before == statistics_expected, kind
        refreshed = not torch.equal(inverse["activation_factor_inverse"], inverse_before)
        assert refreshed == (kind == "refresh"), kind


def test_rounds_give_weighted_samples_and_phases() -> None:
    tnt = contender("tnt")
    tnt.warm_up(1)
    for _ in range(3):
        tnt.run_round()
    assert len(tnt.samples_s) == 3
    weights = {kind: weight for kind, (_, weight) in tnt.kinds.items()}
    assert weights == pytest.approx({"refresh": 1 / 4, "statistics": 1 / 4, "plain": 1 / 2})
    for index, sample in enumerate(tnt.samples_s):
        expected = sum(weights[kind] * tnt.seconds[kind][index] for kind in weights)
        assert sample == pytest.approx(expected)
    phases = tnt.phase_means_s()
    assert phases["inversion"] > 0 and phases["statistics"] > 0
    # the inversion happens on refresh steps only: its per-step mean is a quarter of it
    refresh_inversion = tnt.phases["refresh"]["inversion"] / 3
    assert phases["inversion"] == pytest.approx(weights["refresh"] * refresh_inversion)
    assert "inversion" not in tnt.phases["statistics"]


def test_the_benchmark_table_has_ratios_phases_and_memory() -> None:
    settings = BenchSettings(problems=(TINY,), rounds=2, warmup_steps=1, overhead_rounds=1)
    result = benchmark(settings)
    table = result.tables["tiny_ae"]
    assert list(table["optimizer"]) == list(ALL_OPTIMIZERS)
    assert table.loc[table["optimizer"] == "sgd", "x sgd"].item() == 1.0
    assert (table["ms/step"] > 0).all() and (table["state MB"] > 0).all()
    assert (table["peak MB"] > 0).all()
    curvature = table[~table["optimizer"].isin(["sgd", "adam"])]
    for phase in ("statistics", "inversion", "preconditioning"):
        assert (curvature[f"{phase} ms"] > 0).all(), phase
    assert (table.loc[table["optimizer"].isin(["sgd", "adam"]), "statistics ms"] == 0).all()
    assert (table["forward_backward ms"] > 0).all()
    assert result.overhead is not None and result.overhead.bare_s > 0
    assert result.schedules["tiny_ae"] == (2, 4)
    # the floors (runners.bench.floors; their counts: tests/runners/test_floors.py)
    assert table.loc[table["optimizer"] == "sgd", "floor x sgd"].item() == 1.0
    assert (curvature["floor x sgd"] > 1).all()
    assert table["x floor"].to_numpy() == pytest.approx(
        (table["x sgd"] / table["floor x sgd"]).to_numpy()
    )
    floors = result.floors["tiny_ae"]
    assert list(floors["optimizer"]) == list(ALL_OPTIMIZERS)
    assert (floors["forward_backward GFLOP/s"] > 0).all()
    assert (floors["forward_backward x floor"] > 0).all()
    curvature_floors = floors[~floors["optimizer"].isin(["sgd", "adam"])]
    assert (curvature_floors["preconditioning GFLOP/s"] > 0).all()
    assert floors.loc[floors["optimizer"] == "sgd", "statistics GFLOP/s"].isna().all()


def test_the_command_line_writes_the_page_the_csv_and_the_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(PROBLEMS, "tiny_ae", TINY)
    main(
        [
            "--problems", "tiny_ae", "--optimizers", "sgd,diagonal", "--rounds", "1",
            "--schedule", "every-step", "--no-overhead", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "python -m runners.bench --problems tiny_ae" in out
    assert "statistics every 1, inverses every 1 steps" in out
    assert "| diagonal" in out and "x sgd" in out and "Synthetic inputs" in out
    assert (tmp_path / "phases.png").stat().st_size > 0
    csv = pd.read_csv(tmp_path / "bench.csv")
    assert list(csv["optimizer"]) == ["sgd", "diagonal"]
    assert "Floors (tiny_ae)" in out and "GFLOP/s" in out
    # the example method has no counting rule: no floor, said as NaN rather than a guess
    assert csv.loc[csv["optimizer"] == "diagonal", "x floor"].isna().all()
    floors = pd.read_csv(tmp_path / "floors.csv")
    assert floors.loc[floors["optimizer"] == "diagonal", "statistics GMAC"].isna().all()
    assert (tmp_path / "bench.md").read_text() in out


def test_the_help_lists_the_optimizers_and_the_schedule_forms() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runners.bench", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "80"},
    )
    words = set(re.findall(r"[\w-]+", result.stdout))
    configs = {path.stem for path in (CONF_DIR / "optimizer").glob("*.yaml")}
    assert {"kfac", "tnt", "kbfgs_l", "tengrad", "diagonal"} <= configs  # the glob saw them
    assert configs <= words, configs - words
    for form in ("paper", "every-step", "T1/T2"):
        assert form in result.stdout, form


def test_an_unknown_optimizer_is_refused_with_the_names_it_accepts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--optimizers", "sgd,kfca"])
    error = capsys.readouterr().err
    assert "unknown optimizer(s) kfca" in error and "kfac" in error


def test_each_problem_is_logged_when_it_starts_and_ends(caplog: pytest.LogCaptureFixture) -> None:
    settings = BenchSettings(
        problems=(TINY,), optimizers=("sgd", "tnt"), rounds=1, warmup_steps=1, overhead=False
    )
    with caplog.at_level(logging.INFO, logger="runners.bench.run"):
        benchmark(settings)
    messages = [
        record.getMessage() for record in caplog.records if record.name == "runners.bench.run"
    ]
    assert len(messages) == 2, messages
    start, end = messages
    assert "tiny_ae" in start and "sgd,tnt" in start and "schedule 2/4" in start
    assert re.search(r"tiny_ae done in \d+\.\d s", end) and "sgd,tnt" in end


def test_the_paper_schedule_runs_kbfgs_every_step_and_the_others_on_the_problems() -> None:
    """K-BFGS's authors update on every step (optimizers.kbfgs); the Kronecker methods take
    each problem's T1/T2 (1/20 on the autoencoder, 10/100 on the CNNs)."""
    from runners.bench.problems import PROBLEMS, paper_schedule

    for problem in PROBLEMS.values():
        assert paper_schedule(problem, "kbfgs") == paper_schedule(problem, "kbfgs_l") == (1, 1)
        assert paper_schedule(problem, "kfac") == problem.schedule
    assert PROBLEMS["mnist_ae"].schedule == (1, 20)
    assert PROBLEMS["resnet32"].schedule == (10, 100)


def test_a_variant_is_its_optimizer_with_the_settings_after_the_colons() -> None:
    from runners.bench.run import split_variant

    assert split_variant("kfac") == ("kfac", ())
    base, variant = split_variant("shampoo:root_method=coupled_newton:eps=0.01")
    assert (base, variant) == ("shampoo", (("root_method", "coupled_newton"), ("eps", "0.01")))
    shampoo = build(TINY, base, (2, 4), "cpu", variant).optimizer
    assert shampoo.root_method.value == "coupled_newton"  # type: ignore[attr-defined]
    assert shampoo.param_groups[0]["eps"] == 0.01


def test_a_malformed_variant_is_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--optimizers", "shampoo:root_method", "--out", "unused"])
    assert stopped.value.code == 2
    assert "--optimizers: 'root_method': expected KEY=VALUE" in capsys.readouterr().err


def test_precision_bfloat16_times_steps_under_autocast() -> None:
    built = build(TINY, "kfac", (2, 4), "cpu")
    epoch = built.batches.epoch(0)
    timed = Contender("kfac", built, [epoch.batch(0)], autocast=torch.bfloat16)
    seen: list[torch.dtype] = []
    linear = next(m for m in built.model.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    timed.warm_up(1)
    assert seen and set(seen) == {torch.bfloat16}
    state = built.optimizer.state[linear.weight]
    assert state["activation_factor"].dtype == torch.float32  # statistics stay float32


@pytest.mark.slow  # two torchrun ranks after the one-process run: ~16 s on 2 cores
def test_nproc_measures_the_ranks_at_the_same_global_batch_and_the_scaling(
    tmp_path: Path,
) -> None:
    """--nproc 2: the benchmark again as 2 gloo ranks under torchrun, each on half of every
    global mini-batch; the scaling table compares them with the one-process run."""
    command = [
        sys.executable, "-m", "runners.bench", "--problems", "mnist_ae", "--batch-size", "8",
        "--override", "model.encoder_sizes=[16,8]", "--optimizers", "sgd,kfac",
        "--rounds", "1", "--schedule", "2/4", "--no-overhead", "--nproc", "2",
        "--out", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    scaling = pd.read_csv(tmp_path / "scaling.csv")
    assert list(scaling["optimizer"]) == ["sgd", "kfac"]
    assert (scaling["speed-up"] > 0).all()
    assert scaling["efficiency"].to_numpy() == pytest.approx(scaling["speed-up"] / 2)
    # every step all-reduces the gradients (runners.closure), KFAC its statistics too
    assert (scaling["communication ms"] > 0).all()
    assert (
        "Data parallel: 2 processes at the same global batch" in (tmp_path / "bench.md").read_text()
    )


def test_a_variants_axis_label_is_its_name_and_its_values() -> None:
    from runners.bench.report import short_label

    assert short_label("shampoo:root_method=coupled_newton") == "shampoo\ncoupled_newton"
    assert short_label("kfac") == "kfac"
