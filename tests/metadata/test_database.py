"""The metadata database: every part's tables in one database, created by whoever opens it
first, each at a recorded schema version."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, inspect, update

from perfml.alerting.store import AlertStore
from perfml.controller.decisions import DecisionLog
from perfml.metadata import MetadataDatabase, SchemaVersionError, TableOwner, Tables, sqlite_url
from perfml.metadata.database import schema_versions
from perfml.pipelines.history import RunHistory
from perfml.registry import FilesystemArtifactStore, ModelRegistry


def test_processes_opening_a_fresh_database_at_once_all_find_their_tables(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "metadata.db")
    failures: list[BaseException] = []
    opened: list[object] = []

    def open_all() -> None:  # each thread opens its own database, as a process would
        try:
            with MetadataDatabase(url) as database:
                for kind in (RunHistory, AlertStore, DecisionLog):
                    opened.append(kind(database))
                opened.append(ModelRegistry(database, FilesystemArtifactStore(tmp_path / "a")))
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=open_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert len(opened) == 16
    with MetadataDatabase(url) as database:
        tables = set(inspect(database.engine).get_table_names())
        expected = {"pipeline_runs", "alerts_current", "controller_decisions", "model_versions"}
        assert expected <= tables
        assert database.schema_versions() == {
            "alerts": 1, "decisions": 1, "history": 1, "registry": 1,
        }  # fmt: skip


_counts = MetaData()
_counted = Table("counted", _counts, Column("n", Integer, primary_key=True))


class Counter(TableOwner):
    tables = Tables("counter", 2, _counts)

    def add(self, n: int) -> None:
        with self.write() as con:
            con.execute(_counted.insert().values(n=n))

    def total(self) -> int:
        with self.engine.connect() as con:
            return sum(con.execute(_counted.select()).scalars())


def test_a_part_finds_what_another_database_object_wrote(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "metadata.db")
    with MetadataDatabase(url) as first, MetadataDatabase(url) as second:
        Counter(first).add(2)
        Counter(second).add(3)
        assert Counter(first).total() == 5


def test_tables_at_another_schema_version_are_refused_with_the_part_and_both_versions(
    tmp_path: Path,
) -> None:
    url = sqlite_url(tmp_path / "metadata.db")
    with MetadataDatabase(url) as database:
        Counter(database).add(1)
        with database.writer.begin() as con:
            con.execute(
                update(schema_versions)
                .where(schema_versions.c.component == "counter")
                .values(version=7)
            )
    with MetadataDatabase(url) as database, pytest.raises(SchemaVersionError) as raised:
        Counter(database)
    assert raised.value.component == "counter"
    assert (raised.value.found, raised.value.expected) == (7, 2)
    assert "schema version 7" in str(raised.value)
    assert "uses 2" in str(raised.value)
    with MetadataDatabase(url) as database, database.engine.connect() as con:  # rows are kept
        assert list(con.execute(_counted.select()).scalars()) == [1]
