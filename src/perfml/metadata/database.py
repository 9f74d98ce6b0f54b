"""The metadata database's engine: SQLite (the embedded default) or PostgreSQL, by URL.

One :class:`MetadataDatabase` per process and workspace, shared by every part with tables in
it (SQLAlchemy's engine is a thread-safe pool). On SQLite it runs in WAL mode, a writing
transaction takes the write lock at once (``BEGIN IMMEDIATE``) so that two writers queue
instead of one failing on a stale snapshot, and waits up to 30 s for a lock. Each part's tables
are created on first use with their schema version recorded in ``perfml_schema``; tables at an
older version are migrated forward in the same transaction (never backward: a newer version
is refused); two processes creating them at once is a race the loser simply tries again.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from perfml.metadata.errors import SchemaVersionError
from perfml.metadata.tables import Tables

WRITE = {"perfml_write": True}
"""Execution options of a transaction that writes: on SQLite it takes the write lock at once
(``BEGIN IMMEDIATE``), so that two writers queue instead of failing on a stale snapshot."""

_schema = MetaData()
schema_versions = Table(
    "perfml_schema",
    _schema,
    Column("component", String(32), primary_key=True),
    Column("version", Integer, nullable=False),
)

_ATTEMPTS = 3


def sqlite_url(path: Path) -> str:
    """The URL of the SQLite database file at ``path``."""
    return f"sqlite:///{path.absolute()}"


class MetadataDatabase:
    """The metadata database at ``url`` (see the module's docstring); ``with`` closes it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = _engine(url)
        self.writer: Engine = self.engine.execution_options(**WRITE)
        """The engine for writing transactions (:data:`WRITE`)."""
        self._created: set[str] = set()
        self._lock = threading.Lock()

    @property
    def display_url(self) -> str:
        """The URL with any password hidden, for messages."""
        return self.engine.url.render_as_string(hide_password=True)

    def create(self, tables: Tables) -> None:
        """Create ``tables`` if missing and record their schema version, or check it, in one
        transaction (once per database object; a race with another process is tried again)."""
        with self._lock:
            if tables.component in self._created:
                return
            for attempt in range(_ATTEMPTS):
                try:
                    with self.writer.begin() as con:
                        _schema.create_all(con)
                        tables.metadata.create_all(con)
                        self._check_version(con, tables)
                    break
                except (IntegrityError, ProgrammingError, OperationalError):
                    if attempt == _ATTEMPTS - 1:
                        raise
            self._created.add(tables.component)

    def _check_version(self, con: Any, tables: Tables) -> None:
        found = con.execute(
            select(schema_versions.c.version).where(schema_versions.c.component == tables.component)
        ).scalar()
        if found is None:
            con.execute(
                schema_versions.insert().values(component=tables.component, version=tables.version)
            )
            return
        steps = range(found, tables.version)
        if found > tables.version or any(n not in tables.migrations for n in steps):
            raise SchemaVersionError(self.display_url, tables.component, found, tables.version)
        for number in steps:
            tables.migrations[number](con)
        if found != tables.version:
            con.execute(
                update(schema_versions)
                .where(schema_versions.c.component == tables.component)
                .values(version=tables.version)
            )

    def schema_versions(self) -> dict[str, int]:
        """The schema version of each part's tables, by component."""
        with self.engine.connect() as con:
            if not self.engine.dialect.has_table(con, schema_versions.name):
                return {}
            rows = con.execute(select(schema_versions.c.component, schema_versions.c.version))
            return {str(component): int(version) for component, version in rows}

    def close(self) -> None:
        """Close every connection of the pool."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_begin(connection: Any) -> None:
    write = connection.get_execution_options().get("perfml_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun by _sqlite_begin
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
