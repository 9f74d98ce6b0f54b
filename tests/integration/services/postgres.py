"""A PostgreSQL server for tests, run as the postgres user when the tests run as root."""

from __future__ import annotations

import contextlib
import glob
import importlib
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest
from tests.integration.services.common import (
    PROVISION_SCRIPT,
    Service,
    ServiceProcess,
    ServiceStartError,
    free_port,
    require_binary,
    wait_until,
)

POSTGRES_BIN_DIRS = "/usr/lib/postgresql/*/bin"
"""Where Debian keeps each PostgreSQL version's server programs, off PATH."""


def _missing_service(message: str) -> NoReturn:
    """Skip the test for want of ``message``'s thing, or fail it in CI (see
    :func:`require_binary`)."""
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI is set, so a missing service fails the test", pytrace=False)
    pytest.skip(message)


def require_module(name: str, extra: str) -> ModuleType:
    """Import the Python module ``name`` from perfml's optional dependencies ``extra``; without
    it, skip the test, or fail it in CI, like :func:`require_binary`."""
    try:
        return importlib.import_module(name)
    except ImportError:
        _missing_service(f"{name!r} is not importable (pip install -e '.[{extra}]')")


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def require_postgres_bin_dir() -> Path:
    """The directory holding PostgreSQL's ``initdb`` and ``postgres``: the newest
    ``/usr/lib/postgresql/<version>/bin`` that has both, else the one of ``postgres`` on PATH.
    Without them, skip the test, or fail it in CI, like :func:`require_binary`."""
    found = [
        Path(directory)
        for directory in glob.glob(POSTGRES_BIN_DIRS)
        if all(os.access(Path(directory, program), os.X_OK) for program in ("initdb", "postgres"))
    ]
    if found:
        return max(found, key=lambda directory: _version_key(directory.parent.name))
    directory = Path(require_binary("postgres")).resolve().parent
    if not os.access(directory / "initdb", os.X_OK):
        _missing_service(f"'initdb' is not beside {directory / 'postgres'}")
    return directory


def _traversable_by_all(path: Path) -> bool:
    """Whether every directory from ``/`` down to ``path`` lets any user through (o+x)."""
    return all(os.stat(part).st_mode & stat.S_IXOTH for part in (path, *path.parents))


class PostgresServer(Service):
    """A PostgreSQL cluster of its own for tests, on a free loopback port, removed afterwards.

    Its superuser ``perfml`` has a random password (scram-sha-256, over TCP on 127.0.0.1 only;
    the Unix socket sits in a directory only the cluster's owner can enter) and owns the database
    ``perfml``: ``url`` is that database's SQLAlchemy URL (``postgresql+psycopg://...``), and
    :meth:`create_database` makes another, empty one. Durability is off (``fsync``,
    ``synchronous_commit``, ``full_page_writes``): the data is thrown away anyway.

    PostgreSQL refuses to run as root. Run as root (as CI is), the cluster belongs to the
    ``postgres`` system user: initdb and postgres run as that user through ``setpriv`` (which
    execs, so the server's process is the postmaster itself), and the cluster lives in a fresh
    directory of that user's under the system temporary directory, as pytest's own are 0700 root,
    which that user cannot traverse. Otherwise everything runs as the current user. The logs
    (``initdb.log``, ``postgres.log``) stay in ``workdir``; :class:`ServiceStartError` carries
    them when the server does not come up.
    """

    user = "perfml"
    database = "perfml"
    system_user = "postgres"

    def __init__(self, workdir: Path, *, start_timeout: float = 30.0) -> None:
        self.workdir = workdir
        self.start_timeout = start_timeout
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)
        self.url = self.database_url(self.database)
        self.cluster_dir: Path | None = None
        self.service: ServiceProcess | None = None

    def database_url(self, name: str) -> str:
        """The SQLAlchemy URL of the database ``name`` on this server."""
        return f"postgresql+psycopg://{self.user}:{self.password}@127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        """Create the cluster, start PostgreSQL, wait until it accepts connections and create
        the database ``perfml``."""
        bin_dir = require_postgres_bin_dir()
        psycopg = require_module("psycopg", "postgres")
        run_as, owner = self._run_as()
        self.workdir.mkdir(parents=True, exist_ok=True)
        temp_root = Path(tempfile.gettempdir())
        if owner is not None and not _traversable_by_all(temp_root):
            temp_root = Path("/tmp")
        self.cluster_dir = Path(tempfile.mkdtemp(prefix="perfml-postgres-", dir=temp_root))
        data_dir = self.cluster_dir / "data"
        socket_dir = self.cluster_dir / "sockets"
        password_file = self.cluster_dir / "password"
        socket_dir.mkdir(mode=0o700)
        password_file.write_text(self.password + "\n")
        password_file.chmod(0o600)
        if owner is not None:
            for path in (self.cluster_dir, socket_dir, password_file):
                os.chown(path, *owner)
        initdb_log = self.workdir / "initdb.log"
        try:
            with initdb_log.open("wb") as log:
                initdb = subprocess.run(
                    [
                        *run_as,
                        str(bin_dir / "initdb"),
                        f"--pgdata={data_dir}",
                        f"--username={self.user}",
                        f"--pwfile={password_file}",
                        "--auth-local=trust",
                        "--auth-host=scram-sha-256",
                        "--encoding=UTF8",
                        "--locale=C",
                        "--no-sync",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.cluster_dir,
                    timeout=self.start_timeout,
                    check=False,
                )
        except subprocess.TimeoutExpired:
            self.stop()
            raise ServiceStartError(
                "postgres", "initdb timed out", initdb_log.read_text(errors="replace")
            ) from None
        finally:
            password_file.unlink(missing_ok=True)
        if initdb.returncode != 0:
            self.stop()
            raise ServiceStartError(
                "postgres",
                f"initdb exited with code {initdb.returncode}",
                initdb_log.read_text(errors="replace"),
            )
        argv = [
            *run_as,
            str(bin_dir / "postgres"),
            "-D",
            str(data_dir),
            "-k",
            str(socket_dir),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]
        self.service = ServiceProcess("postgres", argv, self.workdir / "postgres.log")
        self.service.start()
        try:
            wait_until(lambda: self._accepts_connections(psycopg), self.start_timeout, "PostgreSQL")
        except (TimeoutError, RuntimeError) as error:
            log = self.log()
            self.stop()
            raise ServiceStartError("postgres", str(error), log) from None
        self.create_database(self.database)

    def stop(self, grace: float = 10.0) -> None:
        """Stop PostgreSQL and remove the cluster: a fast shutdown (SIGINT, what ``pg_ctl stop
        -m fast`` sends: open sessions are rolled back), then SIGTERM and SIGKILL if it lingers."""
        if self.service is not None:
            process = self.service.process
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(grace)
            self.service.stop()
        if self.cluster_dir is not None:
            shutil.rmtree(self.cluster_dir, ignore_errors=True)
            self.cluster_dir = None

    def log(self) -> str:
        """What PostgreSQL has logged so far."""
        return self.service.log() if self.service is not None else "(not started)"

    def create_database(self, name: str) -> str:
        """Create the empty database ``name`` (a lower-case SQL identifier) and return its
        SQLAlchemy URL."""
        self._admin(f"CREATE DATABASE {self._identifier(name)}")
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop the database ``name``, ending any session still connected to it."""
        self._admin(f"DROP DATABASE IF EXISTS {self._identifier(name)} WITH (FORCE)")

    def _run_as(self) -> tuple[list[str], tuple[int, int] | None]:
        """The prefix that runs a command as the cluster's owner, and that owner's ``(uid,
        gid)`` when it is not the current user."""
        if os.geteuid() != 0:
            return [], None
        try:
            account = pwd.getpwnam(self.system_user)
        except KeyError:
            _missing_service(
                f"there is no {self.system_user!r} user to run PostgreSQL as, which refuses "
                f"root (run {PROVISION_SCRIPT} as root to install PostgreSQL)"
            )
        setpriv = require_binary("setpriv")
        prefix = [
            setpriv,
            f"--reuid={account.pw_uid}",
            f"--regid={account.pw_gid}",
            "--init-groups",
            "--",
        ]
        return prefix, (account.pw_uid, account.pw_gid)

    def _accepts_connections(self, psycopg: Any) -> bool:
        if self.service is None or self.service.process is None:
            raise RuntimeError("PostgreSQL is not running")
        if self.service.process.poll() is not None:
            raise RuntimeError(f"postgres exited with code {self.service.process.returncode}")
        try:
            psycopg.connect(**self._connect_args("postgres"), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def _connect_args(self, database: str) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": database,
        }

    def _admin(self, statement: str) -> None:
        psycopg = require_module("psycopg", "postgres")
        with psycopg.connect(**self._connect_args("postgres"), autocommit=True) as connection:
            connection.execute(statement)

    @staticmethod
    def _identifier(name: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"not a lower-case SQL identifier of at most 63 characters: {name!r}")
        return name
