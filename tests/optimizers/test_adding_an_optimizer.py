"""The README's section "Adding an optimizer", followed literally: its code is the repository's
code, the example's YAML trains through the real runner, its class has a conformance row."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from optimizers.examples.diagonal import DiagonalFisher
from tests.conftest import QUICK, REPO, read_metrics, read_summary, run_dirs, run_train
from tests.optimizers.conformance import OPTIMIZERS

FILE_BLOCK = re.compile(r"<!-- file: (?P<path>\S+) -->\n```\w*\n(?P<code>.*?)```", re.DOTALL)
BASH_BLOCK = re.compile(r"```bash\n(?P<command>.*?)```", re.DOTALL)


def guide() -> str:
    """The README section "## Adding an optimizer", up to the next section."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("\n## Adding an optimizer\n")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def test_the_guides_code_is_the_repositorys_code() -> None:
    blocks = FILE_BLOCK.findall(guide())
    assert {path for path, _ in blocks} == {
        "optimizers/examples/diagonal.py",
        "conf/optimizer/diagonal.yaml",
        "tests/optimizers/conformance.py",
    }
    for path, code in blocks:
        assert code in (REPO / path).read_text(), f"the guide's {path} differs from the file"


def test_the_example_has_its_conformance_row() -> None:
    assert [info.name for info in OPTIMIZERS if info.cls is DiagonalFisher] == ["diagonal"]


def test_the_guides_command_trains_the_example(tmp_path: Path) -> None:
    (command,) = BASH_BLOCK.findall(guide())
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "runners.train"]
    overrides = [w for w in words[3:] if not w.startswith("experiment=")]  # the quick problem
    result = run_train(*QUICK, *overrides, runs_dir=tmp_path / "runs")
    assert result.returncode == 0, result.stdout + result.stderr
    (run_dir,) = run_dirs(tmp_path / "runs")
    summary = read_summary(run_dir)
    assert summary["status"] == "completed"
    assert summary["optimizer"] == "diagonal"
    evaluations = [m["train/full_loss"] for m in read_metrics(run_dir) if "train/full_loss" in m]
    assert evaluations[-1] < evaluations[0]  # the loss at the end is below the initial loss
    assert summary["time"]["phases_s"]["statistics"] > 0  # the base class marked its phases
