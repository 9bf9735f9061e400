"""The analysis package reads run records only: importing every module of it loads no
training code, not even torch (analysis never imports runners/, optimizers/, models/ or data/;
tests/test_import_direction.py checks the imports of every package)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

PROGRAM = """
import importlib, json, pkgutil, sys
import analysis
for module in pkgutil.walk_packages(analysis.__path__, "analysis."):
    importlib.import_module(module.name)
print(json.dumps({
    "analysis": sorted(name for name in sys.modules if name.startswith("analysis.")),
    "top": sorted({name.split(".")[0] for name in sys.modules}),
}))
"""


def test_analysis_imports_no_training_code() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], cwd=REPO, capture_output=True, text=True, check=True
    )
    loaded = json.loads(result.stdout)
    assert {"analysis.figures.sensitivity", "analysis.report", "analysis.wandb_source"} <= set(
        loaded["analysis"]
    )  # every module was imported
    assert "matplotlib" in loaded["top"]
    assert not set(loaded["top"]) & {"runners", "optimizers", "models", "data", "torch"}
