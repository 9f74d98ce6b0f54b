"""The metadata database: the one owner of its engine, shared by the parts that keep tables in it.

SQLite in the workspace by default, PostgreSQL by URL. A part declares its tables as
:class:`Tables` (a name, a schema version and SQLAlchemy tables) and derives its store from
:class:`TableOwner`; it is handed the :class:`MetadataDatabase` and never opens one itself. The
registry, the run history, the alert store and the controller's decision log live here.

>>> from sqlalchemy import Column, Integer, MetaData, Table
>>> tables = MetaData()
>>> counts = Table("counts", tables, Column("n", Integer, primary_key=True))
>>> class Counter(TableOwner):
...     tables = Tables("counter", 1, tables)
...     def add(self, n: int) -> None:
...         with self.write() as con:
...             con.execute(counts.insert().values(n=n))
>>> with MetadataDatabase("sqlite://") as database:
...     Counter(database).add(3)
...     database.schema_versions()
{'counter': 1}
"""

from perfml.metadata.database import WRITE, MetadataDatabase, sqlite_url
from perfml.metadata.errors import MetadataError, SchemaVersionError
from perfml.metadata.tables import Migration, TableOwner, Tables

__all__ = [
    "WRITE",
    "MetadataDatabase",
    "MetadataError",
    "Migration",
    "SchemaVersionError",
    "TableOwner",
    "Tables",
    "sqlite_url",
]
