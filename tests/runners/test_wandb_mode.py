"""W&B goes online only when an account is configured; otherwise offline, never a prompt."""

from __future__ import annotations

from pathlib import Path

import pytest

from runners.config_schema import WandbMode
from runners.wandb_sink import resolve_mode


@pytest.fixture
def no_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    return tmp_path


def test_auto_is_offline_without_an_account(no_account: Path) -> None:
    assert resolve_mode(WandbMode.auto) == "offline"


def test_auto_is_online_with_an_api_key(no_account: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode(WandbMode.auto) == "online"


def test_auto_is_online_after_wandb_login(no_account: Path) -> None:
    netrc = no_account / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "x" * 40 + "\n")
    netrc.chmod(0o600)
    assert resolve_mode(WandbMode.auto) == "online"


def test_explicit_modes_and_the_environment(no_account: Path, monkeypatch) -> None:
    assert resolve_mode(WandbMode.offline) == "offline"
    assert resolve_mode(WandbMode.online) == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode(WandbMode.online) == "disabled"
