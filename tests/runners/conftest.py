"""Fixtures of the runner tests."""

from __future__ import annotations

import pytest

from tests.runners.processes import uninterrupted_metrics


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The records of the stop tests' run (processes.RESUMABLE) when nothing stops it: what
    every stopped and resumed run must end with."""
    return uninterrupted_metrics(tmp_path_factory.mktemp("uninterrupted"))
