"""`python -m analysis.report`: one markdown page with every figure and table of a sweep,
whose links all resolve, and with the runs that did not complete listed."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from analysis.report import main
from tests.analysis.run_records import write_failed_run
from tests.analysis.sweeps import AE, RUNS, write_loaded_sweep, write_sweep


def test_report_page_links_every_figure_and_table(tmp_path: Path, capsys) -> None:
    runs = write_sweep(tmp_path / "runs")
    write_failed_run(runs, "f0", "shampoo", experiment=AE, model="mnist_ae", dataset="mnist")
    out = tmp_path / "report"
    assert main(["--runs", str(runs), "--out", str(out), "--format", "png"]) == 0
    assert capsys.readouterr().out.strip() == f"report: {out / 'report.md'}"
    page = (out / "report.md").read_text()
    assert page.startswith(f"# Sweep report: {runs}")
    diverged = sum(run.status == "diverged" for run in RUNS)
    counts = (
        f"{len(RUNS) - diverged} completed, {diverged} diverged, 1 failed, 0 interrupted, 0 running"
    )
    assert f"Runs: {len(RUNS) + 1} ({counts})." in page
    assert "Invalid damping value: -1.0" in page  # the failed run, listed with its error
    # the TNT problems are chosen by the TNT paper's rules, and the page says whose they are
    assert (
        "Rule: **lowest minimum of the epoch-end EMA (0.9/0.1) of the mini-batch training "
        "losses**" in page
    )
    assert "Why this rule: the TNT paper's rule: the authors' code picks the learning rate" in page
    assert "Rule: **highest test accuracy (best evaluation)**" in page
    assert "`optimizer.lr` ∈ {0.1, 0.3}" in page
    images = re.findall(r"!\[(\w+)\]\(([^)]+)\)", page)
    assert [name for name, _ in images] == [
        "tnt_fig1",
        "tnt_fig2",
        "tnt_ef",
        "overview",
        "seed_bands",
        "sensitivity",
        "profile",
    ]
    for _, link in images:
        assert (out / link).read_bytes()[:4] == b"\x89PNG"
    assert "### kbfgs_fig\n\nNot drawn: kbfgs_mnist_ae: no runs" in page
    assert "- missing: tnt_faces_ae: no runs" in page
    assert "Targets: tnt_cifar10_resnet32: 0.9, tnt_mnist_ae: 45" in page
    for name in ("cost", "results", "profile_time", "profile_epochs"):
        assert f"### {name}" in page
        assert f"[csv](tables/{name}.csv)" in page
    cost = pd.read_csv(out / "tables" / "cost.csv", index_col=[0, 1])
    assert cost.loc[(AE, "TNT"), "step time / SGD-m"] == pytest.approx(2.0)
    assert re.search(r"^\| tnt_mnist_ae +\| TNT +\| +300 +\| +2 +\|", page, re.M)  # cost table


def test_report_of_a_sweep_where_every_run_failed(tmp_path: Path) -> None:
    write_failed_run(tmp_path / "runs", "f0", "kfac")
    write_failed_run(tmp_path / "runs", "f1", "sgd")
    out = tmp_path / "report"
    assert main(["--runs", str(tmp_path / "runs"), "--out", str(out), "--format", "png"]) == 0
    page = (out / "report.md").read_text()
    assert "Runs: 2 (0 completed, 0 diverged, 2 failed, 0 interrupted, 0 running)." in page
    assert "- missing: demo: KFAC: no setting completed" in page
    assert "### sensitivity\n\nNot drawn: no (problem, method) with more than one setting" in page


def test_report_warns_once_per_problem_about_overloaded_runs(tmp_path: Path) -> None:
    busy, out = write_loaded_sweep(tmp_path / "busy", 3.1), tmp_path / "busy_report"
    assert main(["--runs", str(busy), "--out", str(out), "--format", "png"]) == 0
    page = (out / "report.md").read_text()
    assert page.count("overloaded") == 1
    assert (
        "- **demo**: Warning: the machine was overloaded (mean load above its cores) during "
        "Adam seed 1 (load 3.1 on 2 cores): their times and time ratios are not trustworthy."
    ) in page
    assert page.index("overloaded") < page.index("## Best settings")  # read before the rest
    for mean in (2.0, None):  # at the cores is not above them; no section says nothing
        calm, out = write_loaded_sweep(tmp_path / f"calm{mean}", mean), tmp_path / f"r{mean}"
        assert main(["--runs", str(calm), "--out", str(out), "--format", "png"]) == 0
        assert "overloaded" not in (out / "report.md").read_text()
