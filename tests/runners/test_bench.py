"""The cost benchmark runs end to end (on a small autoencoder, so quickly): every optimizer
builds from its YAML, takes interleaved timed blocks, and the table has the ratio to SGD-m and
the per-phase breakdown. Timings themselves are not asserted (the benchmark is not a test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from runners.bench import BenchSettings, benchmark, main


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The inversions of 784 x 784 factors on a shared 2-core machine are far faster without
    OpenMP threads fighting other processes for the cores; nothing here measures speed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_benchmark_table_has_ratios_and_phases() -> None:
    settings = BenchSettings(
        rounds=2, block=2, batch_size=8, encoder_sizes=(16, 8), inverse_every=2
    )
    table = benchmark(settings)
    assert list(table["optimizer"]) == ["sgd", "kfac", "shampoo", "tnt"]
    assert table.loc[table["optimizer"] == "sgd", "x sgd"].item() == 1.0
    assert (table["ms/step"] > 0).all()
    curvature = table[table["optimizer"] != "sgd"]
    for phase in ("statistics", "inversion", "preconditioning"):
        assert (curvature[f"{phase} ms"] > 0).all(), phase
    assert (table.loc[table["optimizer"] == "sgd", "statistics ms"] == 0).all()
    assert (table["forward_backward ms"] > 0).all()


def test_the_command_line_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--optimizers", "sgd,diagonal", "--rounds", "1", "--block", "1", "--batch-size", "4"])
    out = capsys.readouterr().out
    assert "MNIST autoencoder, batch 4, synthetic inputs" in out
    assert "| diagonal" in out and "x sgd" in out
