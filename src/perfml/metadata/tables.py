"""How a part declares its tables in the metadata database, and the base of its store."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import Connection, Engine, MetaData

if TYPE_CHECKING:
    from perfml.metadata.database import MetadataDatabase


Migration = Callable[[Connection], None]
"""Brings a part's tables from one schema version to the next, in the opening transaction."""


@dataclass(frozen=True)
class Tables:
    """A part's tables: its ``component`` name, their schema ``version`` and the SQLAlchemy
    ``metadata`` holding them (as of ``version``). Created once per database, version checked;
    tables at an older version are brought up to date by ``migrations`` (``n`` → ``n + 1``
    for each ``n`` from the found version on), in the same transaction."""

    component: str
    version: int
    metadata: MetaData
    migrations: Mapping[int, Migration] = field(default_factory=dict)


class TableOwner:
    """The base of a part's store in the metadata database (the registry, the run history...):
    its :attr:`tables` are created in the database it is handed, if missing; reads use
    :attr:`engine`, writes :meth:`write` (one transaction that takes the write lock at once).

    The store does not own the database: whoever opened it closes it.
    """

    tables: ClassVar[Tables]

    def __init__(self, database: MetadataDatabase) -> None:
        database.create(self.tables)
        self.database = database
        self.engine: Engine = database.engine

    def write(self) -> AbstractContextManager[Connection]:
        """One writing transaction (see :data:`perfml.metadata.WRITE`)."""
        return self.database.writer.begin()
