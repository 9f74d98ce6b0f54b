from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from perfml.pipelines.dsl import Resources
from perfml.pipelines.history import RunHistory
from perfml.pipelines.runner import LocalRunner
from perfml.registry.db import sqlite_url


@pytest.fixture
def history_url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path / "metadata.db")


@pytest.fixture
def history(history_url: str) -> Iterator[RunHistory]:
    opened = RunHistory(history_url)
    yield opened
    opened.close()


@pytest.fixture
def runner(history: RunHistory, tmp_path: Path) -> LocalRunner:
    return LocalRunner(history, tmp_path / "workspace", Resources(cpu=2, memory="2Gi"), environ={})
