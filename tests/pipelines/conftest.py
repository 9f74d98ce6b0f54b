from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from perfml.metadata import MetadataDatabase, sqlite_url
from perfml.pipelines.dsl import Resources
from perfml.pipelines.history import RunHistory
from perfml.pipelines.runner import LocalRunner


@pytest.fixture
def history_url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path / "metadata.db")


@pytest.fixture
def history(history_url: str) -> Iterator[RunHistory]:
    with MetadataDatabase(history_url) as database:
        yield RunHistory(database)


@pytest.fixture
def runner(history: RunHistory, tmp_path: Path) -> LocalRunner:
    return LocalRunner(history, tmp_path / "workspace", Resources(cpu=2, memory="2Gi"), environ={})
