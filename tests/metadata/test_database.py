"""The metadata database: every part's tables in one database, created by whoever opens it
first, each at a recorded schema version."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, Table, inspect, text, update

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
            "alerts": 1, "decisions": 1, "history": 1, "registry": 2,
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


_counts_v2 = MetaData()
_counted_v2 = Table(
    "counted",
    _counts_v2,
    Column("n", Integer, primary_key=True),
    Column("weight", Integer),
)


def _add_weight(con: Connection) -> None:
    con.execute(text("ALTER TABLE counted ADD COLUMN weight INTEGER"))


class CounterV3(TableOwner):
    """Schema 3 of the counter: 2 → 3 adds a column."""

    tables = Tables("counter", 3, _counts_v2, migrations={2: _add_weight})


def test_tables_at_an_older_version_are_migrated_forward_keeping_their_rows(
    tmp_path: Path,
) -> None:
    url = sqlite_url(tmp_path / "metadata.db")
    with MetadataDatabase(url) as database:
        Counter(database).add(4)  # schema 2
    with MetadataDatabase(url) as database:
        CounterV3(database)
        assert database.schema_versions()["counter"] == 3
        with database.engine.connect() as con:
            assert con.execute(_counted_v2.select()).all() == [(4, None)]
    with MetadataDatabase(url) as database:  # and opened again, nothing to migrate
        CounterV3(database)
        assert database.schema_versions()["counter"] == 3


def test_a_version_no_migration_reaches_is_refused(tmp_path: Path) -> None:
    class CounterV4(TableOwner):
        tables = Tables("counter", 4, _counts_v2, migrations={3: _add_weight})  # 2 → 3 missing

    url = sqlite_url(tmp_path / "metadata.db")
    with MetadataDatabase(url) as database:
        Counter(database).add(1)
    with MetadataDatabase(url) as database, pytest.raises(SchemaVersionError, match="version 2"):
        CounterV4(database)
    with MetadataDatabase(url) as database:
        assert database.schema_versions()["counter"] == 2  # nothing half-migrated
