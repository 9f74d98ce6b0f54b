"""The PostgreSQL test service through SQLAlchemy: real locking, real isolation levels, and a
database of its own for each test."""

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.services import PostgresServer, wait_until

try:
    import sqlalchemy as sa
except ImportError:  # without the postgres extra the postgres fixtures skip (or fail in CI)
    sa = None

pytestmark = pytest.mark.integration

SERIALIZATION_FAILURE = "40001"
LOCK_NOT_AVAILABLE = "55P03"


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Any]:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text("CREATE TABLE counters (id int PRIMARY KEY, value int NOT NULL)")
        )
        connection.execute(sa.text("INSERT INTO counters VALUES (1, 0)"))
    yield engine
    engine.dispose()


def counter(connection: Any, *, for_update: bool = False, nowait: bool = False) -> int:
    lock = " FOR UPDATE NOWAIT" if nowait else " FOR UPDATE" if for_update else ""
    value: int = connection.execute(
        sa.text(f"SELECT value FROM counters WHERE id = 1{lock}")
    ).scalar_one()
    return value


def increment(connection: Any, value: int) -> None:
    connection.execute(sa.text("UPDATE counters SET value = :v WHERE id = 1"), {"v": value + 1})


def lock_waiters(engine: Any) -> int:
    """Sessions of this database waiting on a lock, asked in a transaction of its own (one
    transaction sees a single snapshot of ``pg_stat_activity``)."""
    with engine.connect() as connection:
        waiting: int = connection.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
        return waiting


def test_select_for_update_serialises_two_writers_and_loses_no_update(engine: Any) -> None:
    outcome: dict[str, Any] = {}

    def second_writer() -> None:
        try:
            with engine.begin() as connection:
                increment(connection, counter(connection, for_update=True))
        except Exception as error:  # reported to the main thread, which fails the test
            outcome["error"] = error

    with engine.connect() as first:
        first.begin()
        seen = counter(first, for_update=True)
        # While the first transaction holds the row lock, a NOWAIT attempt is refused at once...
        with engine.connect() as third, pytest.raises(sa.exc.OperationalError) as refused:
            counter(third, nowait=True)
        assert refused.value.orig.sqlstate == LOCK_NOT_AVAILABLE
        # ...and a plain one waits on the lock, as the server itself reports.
        writer = threading.Thread(target=second_writer)
        writer.start()
        try:
            wait_until(
                lambda: lock_waiters(engine), 10, "the second writer to wait on the row lock"
            )
            assert writer.is_alive()
            increment(first, seen)
            first.commit()
        finally:
            writer.join(10)
    assert not writer.is_alive()
    assert "error" not in outcome, outcome
    with engine.connect() as connection:
        assert counter(connection) == 2  # the second writer read the first one's committed 1


def test_repeatable_read_refuses_an_update_over_a_concurrent_commit(engine: Any) -> None:
    with engine.connect() as first, engine.connect() as second:
        second = second.execution_options(isolation_level="REPEATABLE READ")
        second.begin()
        assert counter(second) == 0  # the snapshot is taken here
        with first.begin():
            increment(first, counter(first))
        assert counter(second) == 0  # still the snapshot, not the committed 1
        with pytest.raises(sa.exc.OperationalError) as conflict:
            increment(second, 0)
        assert conflict.value.orig.sqlstate == SERIALIZATION_FAILURE
        second.rollback()
    with engine.connect() as connection:
        assert counter(connection) == 1


def test_each_postgres_url_is_a_database_of_its_own(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    other_url = postgres_server.create_database("isolation_probe")
    try:
        mine, other = sa.create_engine(postgres_url), sa.create_engine(other_url)
        try:
            with mine.begin() as connection:
                connection.execute(sa.text("CREATE TABLE notes (body text)"))
                connection.execute(sa.text("INSERT INTO notes VALUES ('mine')"))
                mine_name = connection.execute(sa.text("SELECT current_database()")).scalar_one()
            with other.connect() as connection:
                other_name = connection.execute(sa.text("SELECT current_database()")).scalar_one()
                assert not sa.inspect(connection).has_table("notes")
            assert mine_name != other_name
            assert postgres_server.database_url(mine_name) == postgres_url
        finally:
            mine.dispose()
            other.dispose()
    finally:
        postgres_server.drop_database("isolation_probe")
