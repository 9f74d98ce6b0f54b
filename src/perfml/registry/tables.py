"""The registry's tables in the metadata database (:mod:`perfml.metadata`).

Versions and aliases are rows; an alias row carries a ``revision`` that every move bumps, so
a move is a compare-and-swap (``UPDATE … WHERE revision = :seen``) that exactly one of two
racing promotions wins, on either database. Events to deliver are written to an outbox in
the same transaction as the change they announce, so none is lost and none is sent for a
change that did not commit.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from perfml.metadata import Tables

metadata = MetaData()

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
    Column("entities", JSON),  # the series the version learnt (schema 2); None: not recorded
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


def _add_entities(con: Connection) -> None:
    """Schema 1 → 2: versions record the entities (series) they learnt."""
    con.execute(text("ALTER TABLE model_versions ADD COLUMN entities JSON"))


TABLES = Tables("registry", 2, metadata, migrations={1: _add_entities})
"""The registry's tables, at schema version 2 (1 had no ``model_versions.entities``)."""
