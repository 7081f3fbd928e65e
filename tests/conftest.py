from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny_models import save_tiny_llama, save_tiny_qwen2

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {"edge": save_tiny_llama(root / "edge-llama"), "cloud": save_tiny_qwen2(root / "cloud-qwen2")}


@pytest.fixture
def loragen_home(tmp_path, monkeypatch) -> Path:
    """An empty LORAGEN_HOME, except that the converted default model is shared (read-only use)."""
    home = tmp_path / "loragen_home"
    home.mkdir()
    monkeypatch.setenv("LORAGEN_HOME", str(home))
    return home


def pytest_collection_modifyitems(config, items):
    # On CI, data-dependent tests must run; a user's clone without ../shared skips them with a reason.
    if os.environ.get("CI") and not SHARED.is_dir():
        raise pytest.UsageError(f"CI=true but {SHARED} is missing: data-dependent tests would be skipped.")
