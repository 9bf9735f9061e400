"""Named figures, inspected as matplotlib objects: panels, axis labels and scales, which
methods are drawn, the plotted numbers (medians over the chosen setting's seeds, derived
here from the known curves of tests/analysis/sweeps.py), colours, and what is said missing.
The runs of sweeps.py log an epoch-end EMA equal to their full loss (from epoch 1 on: no EMA
before the first step), so the paper view (the TNT figures' EMA, the default) and the
full-loss view choose the same settings there; test_paper_figures.py has sweeps where they
differ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.patches import Rectangle

from analysis.figures import draw
from analysis.figures.__main__ import main
from analysis.figures.common import Options
from analysis.load import load
from analysis.results import Results
from analysis.style import colour
from tests.analysis.run_records import write_run
from tests.analysis.sweeps import AE, CNN, chosen, write_sweep


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sweep(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def results(sweep_dir: Path) -> Results:
    return Results.of(load(sweep_dir))


@pytest.fixture(scope="module")
def full_results(sweep_dir: Path) -> Results:
    """Chosen by the full training loss (the full-loss view, `--loss full`)."""
    return Results.of(load(sweep_dir), select_by="full")


FULL = Options(loss="full")


def lines_by_label(axes) -> dict:
    return {line.get_label(): line for line in axes.get_lines()}


def median_by_epoch(problem: str, method: str, values: str = "losses") -> list[float]:
    curves = [getattr(run, values) for run in chosen(problem, method)]
    return list(np.median(np.array(curves, dtype=float), axis=0))


def test_tnt_fig1_draws_what_it_has_and_says_what_is_missing(results: Results) -> None:
    drawn = draw("tnt_fig1", results)
    figure = drawn.figure
    assert drawn.missing == ["tnt_faces_ae: no runs", "tnt_mnist_ae: no runs of Shampoo"]
    notes = [text.get_text() for text in figure.texts]
    assert any("tnt_faces_ae: no runs" in note and "Shampoo" in note for note in notes)
    by_epoch, by_time = figure.axes  # one problem present: 1 row x (epoch, time)
    assert by_epoch.get_title() == by_time.get_title() == "MNIST autoencoder"
    # runs of unknown device: the wall clock, not the paper's process time
    assert (by_epoch.get_xlabel(), by_time.get_xlabel()) == ("epoch", "training time (s)")
    assert by_epoch.get_ylabel() == "training loss (mini-batch EMA)"  # the paper's
    assert by_epoch.get_yscale() == by_time.get_yscale() == "log"
    assert by_epoch.get_xscale() == by_time.get_xscale() == "linear"
    for axes in (by_epoch, by_time):
        # drawn in the figure's order (TNT first, on top of nothing), legend in the papers'
        assert list(lines_by_label(axes)) == ["TNT", "KFAC", "Adam on momentum", "SGD-m"]
    epoch_lines = lines_by_label(by_epoch)
    methods = [("SGD-m", "sgd"), ("KFAC", "kfac"), ("Adam on momentum", "adam_on_momentum")]
    for name, method in [*methods, ("TNT", "tnt")]:
        # the EMA at epoch ends, from epoch 1 (equal to the full loss in these records)
        assert list(epoch_lines[name].get_xdata()) == [1.0, 2.0, 3.0]
        ema = median_by_epoch(AE, method)[1:]
        assert list(epoch_lines[name].get_ydata()) == pytest.approx(ema)
        assert epoch_lines[name].get_color() == colour(method)
    # KFAC: its chosen lr 1e-3, not the lr 3e-3 whose one seed reached 39 then diverged
    assert epoch_lines["KFAC"].get_ydata()[-1] == 45
    legend = [text.get_text() for text in by_epoch.get_legend().get_texts()]
    assert legend == ["SGD-m", "Adam on momentum", "KFAC", "TNT"]  # the papers' order
    bands = [c for c in by_epoch.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 4  # one band per method


def test_time_axis_aligns_seeds_on_training_seconds(full_results: Results) -> None:
    by_time = draw("tnt_fig1", full_results, FULL).figure.axes[1]
    sgd = lines_by_label(by_time)["SGD-m"]
    fast, slow = chosen(AE, "sgd")  # 1 and 2 seconds per epoch
    x = [0.0, 1.0, 2.0, 3.0]  # up to the end of the faster seed
    slow_at_x = np.interp(x, [2.0 * e for e in range(4)], slow.losses)
    assert list(sgd.get_xdata()) == x
    assert list(sgd.get_ydata()) == pytest.approx((np.array(fast.losses) + slow_at_x) / 2)


def test_tnt_fig2_has_loss_and_test_error_against_epochs_and_time(results: Results) -> None:
    drawn = draw("tnt_fig2", results)
    axes = drawn.figure.axes
    assert len(axes) == 4  # one problem present: 2 metrics x 2 axes
    ema = "training loss (mini-batch EMA)"
    assert [a.get_ylabel() for a in axes] == [ema] * 2 + ["test error (%)"] * 2
    assert [a.get_xlabel() for a in axes] == ["epoch", "training time (s)"] * 2
    assert [a.get_yscale() for a in axes] == ["log"] * 4  # the paper: log y on every panel
    error = lines_by_label(axes[2])
    expected = 100 * (1 - np.array(median_by_epoch(CNN, "sgd", "accuracies")))
    assert list(error["SGD-m"].get_ydata()) == pytest.approx(expected)
    assert set(error) == {"SGD-m", "TNT"}
    assert "tnt_cifar100_vgg16: no runs" in drawn.missing


def test_a_figure_with_none_of_its_problems_draws_nothing(results: Results) -> None:
    drawn = draw("kbfgs_fig", results)
    assert drawn.figure is None
    assert drawn.missing == [
        "kbfgs_mnist_ae: no runs",
        "kbfgs_faces_ae: no runs",
        "kbfgs_curves_ae: no runs",
    ]


def test_options_replace_problems_choose_the_loss_and_the_band(results: Results) -> None:
    options = Options(band="bootstrap", loss="ema", problems=(AE,), methods=("tnt", "sgd"))
    drawn = draw("tnt_fig1", results, options)
    assert drawn.missing == []
    by_epoch = drawn.figure.axes[0]
    assert by_epoch.get_ylabel() == "training loss (mini-batch EMA)"
    assert set(lines_by_label(by_epoch)) == {"TNT", "SGD-m"}
    tnt = lines_by_label(by_epoch)["TNT"]
    # the EMA is logged from epoch 1 on (equal to the loss in these records)
    assert list(tnt.get_ydata()) == pytest.approx(median_by_epoch(AE, "tnt")[1:])
    assert "bootstrap" in drawn.figure.get_suptitle()


def test_tengrad_figure_is_against_time_only(tmp_path: Path) -> None:
    for seed in (0, 1):
        for method, seconds in (("tengrad", 2.0), ("kfac", 3.0), ("sgd", 1.0)):
            write_run(
                tmp_path,
                f"{method}{seed}",
                method,
                seed,
                [2.0, 1.0, 0.5],
                seconds,
                experiment="tengrad_fmnist",
                accuracies=[0.1, 0.7, 0.8 + 0.01 * seed],
            )
    drawn = draw("tengrad_fig", Results.of(load(tmp_path)))
    accuracy, loss = drawn.figure.axes
    assert accuracy.get_xlabel() == loss.get_xlabel() == "training time (s)"
    assert accuracy.get_ylabel() == "test accuracy (%)" and loss.get_yscale() == "log"
    tengrad = lines_by_label(accuracy)["TENGraD"]
    assert list(tengrad.get_xdata()) == [0.0, 2.0, 4.0]
    assert list(tengrad.get_ydata()) == pytest.approx([10.0, 70.0, 80.5])
    assert drawn.missing == ["tengrad_cifar10: no runs"]


def test_seed_bands_show_every_seed_and_their_median(results: Results) -> None:
    figure = draw("seed_bands", results).figure
    titled = {axes.get_title(): axes for axes in figure.axes if axes.get_title()}
    assert set(titled) == {
        "CIFAR-10 ResNet-32\nSGD-m",
        "CIFAR-10 ResNet-32\nTNT",
        "MNIST autoencoder\nSGD-m",
        "MNIST autoencoder\nAdam on momentum",
        "MNIST autoencoder\nKFAC",
        "MNIST autoencoder\nTNT",
    }
    tnt = titled["MNIST autoencoder\nTNT"]
    thin = [line for line in tnt.get_lines() if line.get_linewidth() < 1]
    thick = lines_by_label(tnt)["TNT"]
    # the metric of the problem's rule: the TNT paper's epoch-end EMA (= the loss here)
    assert tnt.get_ylabel() == "training loss (mini-batch EMA)"
    assert sorted(list(line.get_ydata()) for line in thin) == sorted(
        run.losses[1:] for run in chosen(AE, "tnt")
    )
    assert list(thick.get_ydata()) == pytest.approx(median_by_epoch(AE, "tnt")[1:])
    assert tnt.get_yscale() == "log" and tnt.get_xlabel() == "epoch (2 seeds)"
    cnn = titled["CIFAR-10 ResNet-32\nTNT"]
    assert cnn.get_ylabel() == "test error (%)"  # the classifier's selection metric


def test_sensitivity_heat_maps_hold_the_scores(results: Results) -> None:
    figure = draw("sensitivity", results).figure
    panels = {axes.get_title(): axes for axes in figure.axes if axes.images}
    assert set(panels) == {
        "CIFAR-10 ResNet-32\nSGD-m",
        "MNIST autoencoder\nSGD-m",
        "MNIST autoencoder\nKFAC",
    }  # methods with a single setting have no map
    kfac = panels["MNIST autoencoder\nKFAC"]
    scores = kfac.images[0].get_array()
    assert scores[0, 0] == 45 and bool(scores.mask[0, 1])  # lr 3e-3 diverged on a seed
    assert [t.get_text() for t in kfac.get_xticklabels()] == ["0.001", "0.003"]
    assert kfac.get_xlabel() == "optimizer.lr"
    assert {t.get_text() for t in kfac.texts} == {"45", "div."}
    (outline,) = [p for p in kfac.patches if isinstance(p, Rectangle)]
    assert outline.get_xy() == (-0.5, -0.5)  # the chosen lr, first column
    cnn = panels["CIFAR-10 ResNet-32\nSGD-m"].images[0].get_array()
    assert list(cnn[0]) == pytest.approx([91.0, 89.0])  # accuracy in %


def test_sensitivity_two_dimensional_grid(tmp_path: Path) -> None:
    scores = {(0.001, 0.1): 40.0, (0.001, 0.3): 42.0, (0.003, 0.1): 45.0, (0.003, 0.3): 38.0}
    for (lr, damping), best in scores.items():
        write_run(
            tmp_path,
            f"k{lr}-{damping}",
            "kfac",
            0,
            [100, best],
            1.0,
            lr=lr,
            optimizer_config={"damping": damping},
        )
    axes = draw("sensitivity", Results.of(load(tmp_path))).figure.axes[0]
    assert axes.get_xlabel() == "optimizer.lr" and axes.get_ylabel() == "optimizer.damping"
    assert [t.get_text() for t in axes.get_yticklabels()] == ["0.1", "0.3"]
    matrix = axes.images[0].get_array()
    assert matrix.tolist() == [[40.0, 45.0], [42.0, 38.0]]  # rows damping, columns lr
    (outline,) = [p for p in axes.patches if isinstance(p, Rectangle)]
    assert outline.get_xy() == (0.5, 0.5)  # lr 0.003, damping 0.3


def test_profile_figure_steps(results: Results) -> None:
    time_axes, epoch_axes = draw("profile", results).figure.axes
    assert time_axes.get_xlim() == (1.0, 4.0)
    assert time_axes.get_title() == "training time to target (2 problems)"
    lines = lines_by_label(time_axes)
    tau = np.asarray(lines["TNT"].get_xdata())
    # TNT: 6 / 4.5 on the autoencoder, 60 / 20 on the CNN
    expected = (tau >= 6.0 / 4.5).astype(float) / 2 + (tau >= 3.0).astype(float) / 2
    assert list(lines["TNT"].get_ydata()) == pytest.approx(expected)
    assert set(lines["KFAC"].get_ydata()) == {0.0}  # missed on one, not run on the other
    assert epoch_axes.get_title() == "epochs to target (2 problems)"
    # by epochs TNT is fastest on the autoencoder (2 vs 3) and ties SGD-m on the CNN
    assert lines_by_label(epoch_axes)["TNT"].get_ydata()[0] == 1.0


def test_command_line_writes_png_and_pdf_and_reports_what_it_skipped(
    sweep_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "figures"
    assert main(["tnt_fig1", "kbfgs_fig", "--runs", str(sweep_dir), "--out", str(out)]) == 0
    output = capsys.readouterr().out
    assert "kbfgs_fig: nothing to draw (kbfgs_mnist_ae: no runs;" in output
    assert f"tnt_fig1: {out / 'tnt_fig1.png'}, {out / 'tnt_fig1.pdf'}" in output
    assert "  missing: tnt_faces_ae: no runs" in output
    assert (out / "tnt_fig1.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "tnt_fig1.pdf").read_bytes()[:4] == b"%PDF"
    assert sorted(path.name for path in out.iterdir()) == ["tnt_fig1.pdf", "tnt_fig1.png"]


def test_no_runs_is_an_error(tmp_path: Path, capsys) -> None:
    assert main(["tnt_fig1", "--runs", str(tmp_path)]) == 1
    assert "no runs" in capsys.readouterr().err


def test_smoke_and_full_runs_of_an_experiment_are_separate_rows(tmp_path: Path) -> None:
    full, smoke = {"train_size": None}, {"train_size": 64}
    for seed in (0, 1):
        write_run(
            tmp_path, f"f{seed}", "sgd", seed, [100, 50], 1.0, experiment=AE, dataset_config=full
        )
        write_run(
            tmp_path, f"s{seed}", "sgd", seed, [100, 5], 1.0, experiment=AE, dataset_config=smoke
        )
    results = Results.of(load(tmp_path), select_by="full")
    assert len(results.selection.best_groups()) == 2  # one choice per problem
    drawn = draw("tnt_fig1", results, FULL)
    titles = [axes.get_title() for axes in drawn.figure.axes]
    assert titles == [
        "MNIST autoencoder [dataset.train_size=64]",
        "MNIST autoencoder [dataset.train_size=64]",
        "MNIST autoencoder [dataset.train_size=null]",
        "MNIST autoencoder [dataset.train_size=null]",
    ]
    smoke_loss = lines_by_label(drawn.figure.axes[0])["SGD-m"].get_ydata()
    full_loss = lines_by_label(drawn.figure.axes[2])["SGD-m"].get_ydata()
    assert (list(smoke_loss), list(full_loss)) == ([100, 5], [100, 50])
    assert drawn.missing[0] == "tnt_faces_ae: no runs"


def test_a_named_figure_that_draws_nothing_names_the_problems_and_fails(
    tmp_path: Path, capsys
) -> None:
    runs = tmp_path / "runs"  # what `make demo` leaves: the demo problem only
    for seed in (0, 1):
        write_run(runs, f"s{seed}", "sgd", seed, [100, 60 - seed], 1.0)
        write_run(runs, f"a{seed}", "adam", seed, [100, 40 + seed], 2.0)
    out = tmp_path / "figures"
    assert main(["tnt_fig1", "--runs", str(runs), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "tnt_fig1: nothing to draw (tnt_mnist_ae: no runs; tnt_faces_ae: no runs)" in (
        captured.out
    )
    assert (
        "tnt_fig1 wants tnt_mnist_ae, tnt_faces_ae; the sweep has demo "
        "(draw those with `tnt_fig1 --problems demo`, or `overview`)."
    ) in captured.out
    assert captured.err == f"no figure drawn from {runs}\n"
    assert not out.exists()
    # `all` draws what the sweep has (overview, seed bands, profile) and succeeds
    assert main(["all", "--runs", str(runs), "--out", str(out), "--format", "png"]) == 0
    captured = capsys.readouterr()
    assert "tnt_fig1: nothing to draw" in captured.out and captured.err == ""
    assert (out / "overview.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "tnt_fig1.png").exists()
    # the same layout drawn for the sweep's problem
    assert main(["tnt_fig1", "--problems", "demo", "--runs", str(runs), "--out", str(out)]) == 0
