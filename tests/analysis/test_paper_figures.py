"""The paper figures draw what their papers drew, each method at the setting its paper's rule
chooses (analysis.papers), on sweeps where the papers' rules and the full-loss rule choose
different learning rates; the full-loss view and rule are one option away; the time axis is
the papers' process time on CPU runs. Every expected number is computed here from the
curves written below, not by the code under test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analysis.compare import main as compare_main
from analysis.figures import draw
from analysis.figures.common import Options
from analysis.load import load
from analysis.papers import KBFGS_METHODS
from analysis.report import main as report_main
from analysis.results import Results
from analysis.style import colour, display_name
from tests.analysis.run_records import write_run

TAU = 1e-5  # the K-BFGS code's L2 coefficient, as its figure adds it
AE = "tnt_mnist_ae"

# tnt_mnist_ae, SGD-m: lr 0.1 reaches the lower full loss (45 < 48), lr 0.3 the lower
# epoch-end EMA (50 < 52). Half-way through each epoch lr 0.1's EMA dips to 30: not an epoch
# end, so it must not count (if it did, lr 0.1 would win under the EMA rule too).
SGD = {
    0.1: {"losses": [100, 60, 50, 45], "ema": [0, 70, 58, 52], "ema_mid_epoch": [30, 30, 30]},
    0.3: {"losses": [100, 62, 52, 48], "ema": [0, 65, 55, 50]},
}
ADAM = {"losses": [100, 58, 49, 44], "ema": [0, 66, 57, 53]}


def write_tnt_ae(root: Path, experiment: str = AE, **extra) -> None:
    for lr, curves in SGD.items():
        write_run(
            root,
            f"{experiment}-sgd-{lr}",
            "sgd",
            0,
            seconds_per_epoch=1.0,
            lr=lr,
            experiment=experiment,
            **curves,
            **extra,
        )
    write_run(
        root,
        f"{experiment}-adam",
        "adam_on_momentum",
        0,
        seconds_per_epoch=2.0,
        lr=1e-3,
        experiment=experiment,
        **ADAM,
        **extra,
    )


@pytest.fixture(scope="module")
def tnt_ae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tnt_ae")
    write_tnt_ae(root)
    write_tnt_ae(root, experiment="demo")  # the same curves on `make demo`'s problem
    return root


def lines(axes) -> dict:
    return {line.get_label(): line for line in axes.get_lines()}


def chosen_lr(results: Results, problem: str, method: str) -> float:
    group = results.selection.best_groups()[(problem, method)]
    runs = results.sweep.runs
    return float(runs.loc[runs["group"] == group, "config.optimizer.lr"].iloc[0])


def test_tnt_fig1_chooses_and_draws_the_epoch_end_ema(tnt_ae: Path) -> None:
    results = Results.of(load(tnt_ae))
    assert chosen_lr(results, AE, "sgd") == 0.3  # the EMA rule's, not the full loss's 0.1
    drawn = draw("tnt_fig1", results)
    by_epoch, by_time = drawn.figure.axes  # 1 x 2 for the one problem present
    assert by_epoch.get_ylabel() == "training loss (mini-batch EMA)"
    assert by_epoch.get_yscale() == by_time.get_yscale() == "log"
    assert by_epoch.get_xscale() == by_time.get_xscale() == "linear"
    sgd = lines(by_epoch)["SGD-m"]
    assert list(sgd.get_xdata()) == [1.0, 2.0, 3.0]  # epoch ends only, from the first
    assert list(sgd.get_ydata()) == SGD[0.3]["ema"][1:]
    assert list(lines(by_epoch)["Adam on momentum"].get_ydata()) == ADAM["ema"][1:]
    assert "settings chosen by the lowest minimum of the epoch-end EMA" in drawn.caption


def test_the_full_loss_option_restores_the_full_loss_view_and_rule(tnt_ae: Path) -> None:
    results = Results.of(load(tnt_ae), select_by="full")
    assert chosen_lr(results, AE, "sgd") == 0.1
    by_epoch, _ = draw("tnt_fig1", results, Options(loss="full")).figure.axes
    assert by_epoch.get_ylabel() == "training loss"
    sgd = lines(by_epoch)["SGD-m"]
    assert list(sgd.get_xdata()) == [0.0, 1.0, 2.0, 3.0]
    assert list(sgd.get_ydata()) == SGD[0.1]["losses"]
    assert by_epoch.get_yscale() == "log" and by_epoch.get_xscale() == "linear"


def best_rows(page: str, problem: str) -> list[str]:
    section = page.split(f"### {problem}\n")[1].split("\n### ")[0]
    return [line for line in section.splitlines() if "**best**" in line]


def test_report_follows_the_drawn_loss_unless_told_otherwise(tnt_ae: Path, tmp_path) -> None:
    pages = {}
    for name, args in {
        "paper": [],
        "full": ["--loss", "full"],
        "full_drawn_paper_rule": ["--loss", "full", "--select", "paper"],
    }.items():
        out = tmp_path / name
        command = ["--runs", str(tnt_ae), "--out", str(out), "--format", "png", *args]
        assert report_main(command) == 0
        pages[name] = (out / "report.md").read_text()
    ema_rule = "Rule: **lowest minimum of the epoch-end EMA"
    full_rule = "Rule: **lowest training loss (full training set, best evaluation)**"
    for name, rule, lr in (
        ("paper", ema_rule, 0.3),
        ("full", full_rule, 0.1),
        ("full_drawn_paper_rule", ema_rule, 0.3),
    ):
        section = pages[name].split(f"### {AE}\n")[1]
        assert section.lstrip().startswith(rule), name
        sgd = next(row for row in best_rows(pages[name], AE) if "SGD-m" in row)
        assert f"optimizer.lr={lr}" in sgd, name
    assert "Why this rule: the TNT paper's rule" in pages["paper"]
    # demo keeps sobench's full-loss rule, whichever view is drawn
    demo = pages["paper"].split("### demo\n")[1]
    assert demo.lstrip().startswith(full_rule)
    assert "Why this rule: sobench's rule for autoencoders (demo is no paper's problem)" in demo
    demo_sgd = next(row for row in best_rows(pages["paper"], "demo") if "SGD-m" in row)
    assert "optimizer.lr=0.1" in demo_sgd


def test_compare_says_which_rule_chose_and_why(tnt_ae: Path, capsys) -> None:
    assert compare_main([str(tnt_ae)]) == 0
    output = capsys.readouterr().out
    demo, tnt = output.split(f"## {AE}\n")
    assert (
        "Settings chosen by the lowest training loss (full training set, best evaluation)" in demo
    )
    assert "sobench's rule for autoencoders" in demo
    demo_sgd = next(line for line in demo.splitlines() if line.startswith("| SGD-m"))
    assert "optimizer.lr=0.1" in demo_sgd
    assert "Settings chosen by the lowest minimum of the epoch-end EMA" in tnt
    assert "the TNT paper's rule" in tnt
    sgd_row = next(line for line in tnt.splitlines() if line.startswith("| SGD-m"))
    assert "optimizer.lr=0.3" in sgd_row


# TNT CIFAR-10: lr 0.3 trains lower (full loss and EMA) but lr 0.1 generalises better
CNN = "tnt_cifar10_resnet32"
CNN_RUNS = {
    0.1: {"losses": [2.3, 1.0, 0.6], "ema": [0, 1.2, 0.8], "accuracies": [0.1, 0.80, 0.91]},
    0.3: {"losses": [2.3, 0.8, 0.3], "ema": [0, 1.0, 0.5], "accuracies": [0.1, 0.85, 0.88]},
}


def test_tnt_fig2_is_two_by_two_with_the_ema_and_the_test_error(tmp_path: Path) -> None:
    for lr, curves in CNN_RUNS.items():
        write_run(
            tmp_path,
            f"c{lr}",
            "sgd",
            0,
            seconds_per_epoch=10.0,
            lr=lr,
            experiment=CNN,
            model="resnet32",
            dataset="cifar10",
            **curves,
        )
    results = Results.of(load(tmp_path))
    assert chosen_lr(results, CNN, "sgd") == 0.1  # highest test accuracy, as the paper
    axes = draw("tnt_fig2", results).figure.axes
    assert len(axes) == 4
    spans = [(a.get_subplotspec().rowspan.start, a.get_subplotspec().colspan.start) for a in axes]
    assert spans == [(0, 0), (0, 1), (1, 0), (1, 1)]  # rows: loss, error; columns: epoch, time
    assert [a.get_ylabel() for a in axes] == ["training loss (mini-batch EMA)"] * 2 + [
        "test error (%)"
    ] * 2
    assert [a.get_xlabel() for a in axes] == ["epoch", "training time (s)"] * 2
    assert [a.get_yscale() for a in axes] == ["log"] * 4
    assert [a.get_xscale() for a in axes] == ["linear"] * 4
    assert list(lines(axes[0])["SGD-m"].get_ydata()) == CNN_RUNS[0.1]["ema"][1:]
    error = 100 * (1 - np.array(CNN_RUNS[0.1]["accuracies"]))
    assert list(lines(axes[2])["SGD-m"].get_ydata()) == pytest.approx(error)


# K-BFGS MNIST: lr 1.0 reaches the lower full loss (40 < 45) but its weights grow, so the
# plotted objective (full loss + 0.5 tau ||w||^2) is lower for lr 0.3 (50 < 55)
KBFGS_RUNS = {
    1.0: {"losses": [100, 50, 40], "weight_sq_norms": [1e6, 1e6, 4e6]},
    0.3: {"losses": [100, 52, 45], "weight_sq_norms": [1e6, 1e6, 1e6]},
}


def objective(curves: dict) -> list[float]:
    return [
        loss + 0.5 * TAU * norm
        for loss, norm in zip(curves["losses"], curves["weight_sq_norms"], strict=True)
    ]


def write_kbfgs(
    root: Path, with_norm: bool = True, methods=("kbfgs", "rmsprop_on_momentum")
) -> None:
    for method in methods:
        for lr, curves in KBFGS_RUNS.items():
            curves = curves if with_norm else {"losses": curves["losses"]}
            write_run(
                root,
                f"{method}{lr}",
                method,
                0,
                seconds_per_epoch=5.0,
                lr=lr,
                experiment="kbfgs_mnist_ae",
                dataset="mnist",
                **curves,
            )


def test_kbfgs_fig_draws_and_chooses_by_the_full_loss_plus_the_l2_term(tmp_path: Path) -> None:
    write_kbfgs(tmp_path)
    results = Results.of(load(tmp_path))
    assert objective(KBFGS_RUNS[0.3])[-1] < min(objective(KBFGS_RUNS[1.0]))
    assert chosen_lr(results, "kbfgs_mnist_ae", "kbfgs") == 0.3
    rule = results.selection.rules["kbfgs_mnist_ae"]
    assert "0.5 tau ||w||^2" in rule.text and "no selection rule" in rule.why
    drawn = draw("kbfgs_fig", results)
    by_epoch, by_time = drawn.figure.axes
    assert by_epoch.get_ylabel() == "training loss + ½τ‖w‖²"
    assert by_epoch.get_yscale() == by_time.get_yscale() == "log"
    assert by_epoch.get_xscale() == "linear"
    drawn_lines = lines(by_epoch)
    assert list(drawn_lines["K-BFGS"].get_ydata()) == pytest.approx(objective(KBFGS_RUNS[0.3]))
    assert "rmsprop_on_momentum" in KBFGS_METHODS  # the slot of the K-BFGS code's RMSprop
    rmsprop = drawn_lines["RMSprop on momentum"]
    assert list(rmsprop.get_ydata()) == pytest.approx(objective(KBFGS_RUNS[0.3]))
    assert rmsprop.get_color() == colour("rmsprop_on_momentum") != colour("adam")
    assert display_name("rmsprop_on_momentum") == "RMSprop on momentum"


def test_kbfgs_fig_says_the_weight_norm_is_missing_rather_than_drawing_the_loss(
    tmp_path: Path,
) -> None:
    write_kbfgs(tmp_path, with_norm=False)
    results = Results.of(load(tmp_path))
    rule = results.selection.rules["kbfgs_mnist_ae"]
    # the whole problem falls back to the full loss for choosing, and says why
    assert rule.text.startswith("lowest training loss")
    assert "4 of 4 completed runs did not log model/weight_sq_norm" in rule.why
    assert chosen_lr(results, "kbfgs_mnist_ae", "kbfgs") == 1.0
    drawn = draw("kbfgs_fig", results)
    panels = drawn.figure.axes[:2]
    assert all(not axes.get_lines() for axes in panels)  # nothing drawn in its place
    assert all(not axes.axison for axes in panels)
    assert any("no model/weight_sq_norm logged" in text.get_text() for text in panels[0].texts)
    assert (
        "kbfgs_mnist_ae: training loss + ½τ‖w‖² not drawn (no model/weight_sq_norm logged)"
    ) in drawn.missing


def test_kbfgs_fig_names_the_methods_without_the_weight_norm(tmp_path: Path) -> None:
    write_kbfgs(tmp_path, methods=("kbfgs",))
    write_kbfgs(tmp_path, with_norm=False, methods=("adam_on_momentum",))
    drawn = draw("kbfgs_fig", Results.of(load(tmp_path)))
    assert set(lines(drawn.figure.axes[0])) == {"K-BFGS"}
    assert (
        "kbfgs_mnist_ae: Adam on momentum: training loss + ½τ‖w‖² not drawn (no "
        "model/weight_sq_norm logged)"
    ) in drawn.missing


WALL = [0.0, 1.0, 2.0, 3.0]
PROCESS = [0.0, 3.5, 7.0, 10.5]  # CPU seconds of all threads: more than the wall clock


def test_the_process_time_axis_draws_time_process_s(tmp_path: Path) -> None:
    cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
    for root, device in ((cpu, "cpu"), (gpu, "cuda:0")):
        write_run(
            root,
            "s",
            "sgd",
            0,
            [100, 60, 50, 45],
            1.0,
            experiment=AE,
            times=WALL,
            process_times=PROCESS,
            device=device,
        )
    on_cpu = Results.of(load(cpu))
    drawn = draw("tnt_fig1", on_cpu)  # auto: the paper's process time, every run on the CPU
    by_time = drawn.figure.axes[1]
    assert by_time.get_xlabel() == "process time (s)"
    assert by_time.get_xscale() == "linear"
    assert list(lines(by_time)["SGD-m"].get_xdata()) == PROCESS[1:]  # the EMA from epoch 1
    assert "process time, the paper's clock" in drawn.figure.get_suptitle()
    assert "process CPU time (time/process_s), the paper's clock" in drawn.caption
    wall = draw("tnt_fig1", on_cpu, Options(clock="wall")).figure.axes[1]
    assert wall.get_xlabel() == "training time (s)"
    assert list(lines(wall)["SGD-m"].get_xdata()) == WALL[1:]
    # sobench's own figures keep the wall clock
    overview = draw("overview", on_cpu).figure.axes[1]
    assert list(lines(overview)["SGD-m"].get_xdata()) == WALL[1:]
    # on a GPU, auto draws the wall clock and says why; asked for, process time is drawn
    on_gpu = Results.of(load(gpu))
    drawn = draw("tnt_fig1", on_gpu)
    assert list(lines(drawn.figure.axes[1])["SGD-m"].get_xdata()) == WALL[1:]
    assert "not the paper's process time: runs on cuda:0" in drawn.caption
    asked = draw("tnt_fig1", on_gpu, Options(clock="process"))
    assert list(lines(asked.figure.axes[1])["SGD-m"].get_xdata()) == PROCESS[1:]
    assert "runs on cuda:0, where process time would miss asynchronous GPU work" in asked.caption


def test_unknown_methods_still_get_a_colour() -> None:
    names = ("sgd", "adam", "kfac", "tnt", "rmsprop_on_momentum", "adam_on_momentum", "sgdw")
    assert len({colour(method) for method in names}) == len(names)
    assert colour("sgd_decoupled_wd") == colour("sgd_decoupled_wd")  # stable, and no error


def test_the_figures_command_takes_loss_select_and_clock(tnt_ae: Path, monkeypatch) -> None:
    import analysis.figures.__main__ as command

    saved = {}

    def keep(figure, directory, name, formats):
        saved[name] = figure
        return [directory / f"{name}.png"]

    monkeypatch.setattr(command, "save", keep)

    def sgd_line(*args: str):
        assert command.main(["tnt_fig1", "--runs", str(tnt_ae), *args]) == 0
        by_epoch, by_time = saved["tnt_fig1"].axes
        return lines(by_epoch)["SGD-m"], by_time

    line, _ = sgd_line()
    assert list(line.get_ydata()) == SGD[0.3]["ema"][1:]  # the paper's view and rule
    line, _ = sgd_line("--loss", "full")
    assert list(line.get_ydata()) == SGD[0.1]["losses"]  # the rule follows the loss
    line, _ = sgd_line("--loss", "full", "--select", "paper")
    assert list(line.get_ydata()) == SGD[0.3]["losses"]  # told otherwise
    _, by_time = sgd_line("--clock", "process")
    assert by_time.get_xlabel() == "process time (s)"
    # write_run's default process time: 1.5 x the training seconds (1 s per epoch)
    assert list(lines(by_time)["SGD-m"].get_xdata()) == [1.5, 3.0, 4.5]
