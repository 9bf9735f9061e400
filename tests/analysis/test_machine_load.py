"""Which runs ran on an overloaded machine (summary.json's machine_load, the contract's rule),
and the one warning line per problem that names them; on run directories."""

from __future__ import annotations

from pathlib import Path

from analysis.load import load
from analysis.machine_load import overload_warnings, overloaded_runs
from tests.analysis.run_records import machine_load_section, write_run


def test_overloaded_runs_and_one_warning_per_problem(tmp_path: Path) -> None:
    cnn = {"experiment": "tnt_cifar10_resnet32", "model": "resnet32", "dataset": "cifar10"}
    write_run(tmp_path, "s0", "sgd", 0, [100, 60], 1.0, machine_load=machine_load_section(2, 2.5))
    write_run(tmp_path, "s1", "sgd", 1, [100, 60], 1.0, machine_load=machine_load_section(2, 2.0))
    write_run(tmp_path, "t1", "tnt", 1, [100, 60], 1.0, machine_load=machine_load_section(4, 9))
    write_run(tmp_path, "t0", "tnt", 0, [100, 60], 1.0, machine_load=machine_load_section(4, 5))
    write_run(tmp_path, "old", "adam", 0, [100, 60], 1.0)  # no section: never flagged
    write_run(tmp_path, "c0", "sgd", 0, [2, 1], 1.0, machine_load=machine_load_section(2, 1), **cnn)
    runs = load(tmp_path).runs
    assert sorted(overloaded_runs(runs)["run_id"]) == ["s0", "t0", "t1"]  # 2.0 on 2 is not
    assert overload_warnings(runs) == {
        "demo": "Warning: the machine was overloaded (mean load above its cores) during "
        "SGD-m seed 0 (load 2.5 on 2 cores), TNT seed 0 (load 5 on 4 cores), "
        "TNT seed 1 (load 9 on 4 cores): their times and time ratios are not trustworthy."
    }
    assert overload_warnings(runs[runs["run_id"].isin(["old", "c0", "s1"])]) == {}
