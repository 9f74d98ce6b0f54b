"""The registry's tables, and engines for SQLite (embedded default) or PostgreSQL.

Versions and aliases are rows; an alias row carries a ``revision`` that every move bumps, so
a move is a compare-and-swap (``UPDATE … WHERE revision = :seen``) that exactly one of two
racing promotions wins, on either database. Events to deliver are written to an outbox in
the same transaction as the change they announce, so none is lost and none is sent for a
change that did not commit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from perfml.registry.errors import RegistryError

SCHEMA_VERSION = 1

metadata = MetaData()

schema_info = Table(
    "perfml_schema",
    metadata,
    Column("component", String(32), primary_key=True),
    Column("version", Integer, nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("tags", JSON, nullable=False, default=dict),
    Column("created_at", Float, nullable=False),
)

versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("detector", String(64), nullable=False),
    Column("params", JSON, nullable=False),
    Column("data_start", Float),
    Column("data_end", Float),
    Column("features", JSON, nullable=False),
    Column("pipeline_run", String(128)),
    Column("metrics", JSON, nullable=False),
    Column("perfml_version", String(32), nullable=False),
    Column("tags", JSON, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("model_id", "version", name="uq_version_number"),
    UniqueConstraint("model_id", "digest", name="uq_version_digest"),
)

aliases = Table(
    "aliases",
    metadata,
    Column("model_id", Integer, ForeignKey("models.id"), primary_key=True),
    Column("alias", String(128), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)

audit = Table(
    "alias_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("alias", String(128), nullable=False),
    Column("action", String(16), nullable=False),
    Column("from_version", Integer),
    Column("to_version", Integer),
    Column("actor", String(128), nullable=False),
    Column("at", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("forced", Boolean, nullable=False),
    Column("gate", JSON),
    Column("revision", Integer, nullable=False),
    Index("ix_audit_alias", "model_id", "alias", "id"),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("url", Text, nullable=False),
    Column("secret", Text, nullable=False),
    Column("events", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
)

outbox = Table(
    "event_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("webhook_id", Integer, ForeignKey("webhooks.id"), nullable=False),
    Column("event", String(32), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("delivered_at", Float),
    Column("failed_at", Float),
    Column("last_error", Text),
    Index("ix_outbox_due", "delivered_at", "failed_at", "next_attempt_at"),
)


class SchemaVersionError(RegistryError):
    def __init__(self, url: str, found: int) -> None:
        super().__init__(
            f"registry database {url} has schema version {found}; this perfml uses {SCHEMA_VERSION}"
        )


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.absolute()}"


def connect(url: str) -> Engine:
    """An engine for ``url`` with the tables created (and their version checked)."""
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    _ensure_schema(engine, url)
    return engine


def connect_with(url: str, tables: MetaData) -> Engine:
    """:func:`connect`, and the ``tables`` of another part of perfml (the run history, the
    alerts, the controller's decisions) created beside the registry's if missing — as
    :func:`_ensure_schema` does, a race with another process creating them is tried again."""
    engine = connect(url)
    for attempt in range(3):
        try:
            with engine.execution_options(**WRITE).begin() as con:
                tables.create_all(con)
            return engine
        except (IntegrityError, ProgrammingError, OperationalError):
            if attempt == 2:
                raise
    return engine


WRITE = {"perfml_write": True}
"""Execution options of a transaction that writes: on SQLite it takes the write lock at once
(``BEGIN IMMEDIATE``), so that two writers queue instead of failing on a stale snapshot."""


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


def _ensure_schema(engine: Engine, url: str) -> None:
    """Create missing tables and record the schema version, in one transaction.

    Two processes opening a fresh database at once may both try; the loser of the race gets
    an integrity or "already exists" error and simply tries again, finding the tables there.
    """
    for attempt in range(3):
        try:
            with engine.execution_options(**WRITE).begin() as con:
                metadata.create_all(con)
                found = con.execute(
                    select(schema_info.c.version).where(schema_info.c.component == "registry")
                ).scalar()
                if found is None:
                    con.execute(
                        schema_info.insert().values(component="registry", version=SCHEMA_VERSION)
                    )
                elif found != SCHEMA_VERSION:
                    raise SchemaVersionError(engine.url.render_as_string(hide_password=True), found)
            return
        except (IntegrityError, ProgrammingError, OperationalError):
            if attempt == 2:
                raise
