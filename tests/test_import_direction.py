"""Imports flow one way between the project's packages, read from the source with `ast` (so a
function-level import counts too):

    contract   nothing of the project but itself, and never torch: it is what runners/ write and
               analysis/ read, and analysis must load without training code
    models     models only
    optimizers optimizers only
    data       data, and models' vocabulary (models.task: what a data set can be used for)
    runners    anything but analysis (a run never depends on how it will be plotted)
    analysis   analysis and contract: run records, never training code
    hydra_plugins  the sweeper Hydra loads from there: runners and contract
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("contract", "models", "optimizers", "data", "runners", "analysis", "hydra_plugins")
ALLOWED: dict[str, set[str]] = {
    "contract": {"contract"},
    "models": {"models"},
    "optimizers": {"optimizers"},
    "data": {"data", "models"},
    "runners": {"runners", "contract", "data", "models", "optimizers"},
    "analysis": {"analysis", "contract"},
    "hydra_plugins": {"hydra_plugins", "runners", "contract"},
}
NEVER_TORCH = ("contract", "analysis")


def imported_modules(path: Path, root: Path) -> set[str]:
    """Absolute module names a file imports (relative imports name their own package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.add(path.relative_to(root).parts[0])
            elif node.module:
                names.add(node.module)
    return names


def package_imports(package: str, root: Path = REPO) -> dict[str, set[str]]:
    """Top-level names each file of a package imports: {file: {"torch", "runners", ...}}."""
    return {
        str(path.relative_to(root)): {name.split(".")[0] for name in imported_modules(path, root)}
        for path in sorted((root / package).rglob("*.py"))
    }


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_flow_one_way(package: str) -> None:
    files = package_imports(package)
    assert files, f"{package}/ has no Python files"
    wrong = {
        file: sorted(found & set(PACKAGES) - ALLOWED[package])
        for file, found in files.items()
        if found & set(PACKAGES) - ALLOWED[package]
    }
    assert not wrong, f"{package}/ imports packages it must not: {wrong}"


@pytest.mark.parametrize("package", NEVER_TORCH)
def test_record_readers_never_import_torch(package: str) -> None:
    with_torch = [file for file, found in package_imports(package).items() if "torch" in found]
    assert not with_torch, f"these files import torch: {with_torch}"


def test_the_checker_sees_a_wrong_import(tmp_path: Path) -> None:
    """The check can fail: a function-level import of runners, or a relative one, is seen."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "probe.py").write_text(
        "from . import tensors\n\ndef f():\n    from runners.build import UserInputError\n"
    )
    assert package_imports("data", tmp_path) == {"data/probe.py": {"data", "runners"}}
