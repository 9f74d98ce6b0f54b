"""An ASGI app on uvicorn in a background thread: how perfml runs servers inside one process.

``perfml up`` and the demo run the inference server and the dashboard beside the monitoring
and the controller in one process; each server is an :class:`AppServer`. Port 0 takes a free
port (read it from :attr:`AppServer.port` once started).

>>> from starlette.applications import Starlette
>>> with AppServer(Starlette(), port=0) as server:
...     server.url.startswith("http://127.0.0.1:")
True
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import uvicorn

from perfml.errors import PerfmlError


class ServerStartError(PerfmlError):
    def __init__(self, name: str, host: str, port: int, problem: str) -> None:
        super().__init__(f"the {name} could not listen on {host}:{port}: {problem}")


class PortInUseError(ServerStartError):
    """Something else listens on the address: said before anything claims to serve there."""

    def __init__(self, name: str, host: str, port: int, setting: str) -> None:
        self.host, self.port, self.setting = host, port, setting
        change = f" (choose another with {setting})" if setting else ""
        super().__init__(name, host, port, f"the port is in use{change}")


def check_listen(host: str, port: int, name: str = "server", setting: str = "") -> None:
    """Fail (:class:`PortInUseError`, or :class:`ServerStartError` for an address this machine
    does not have) unless a server could listen on ``host:port`` now; ``setting`` names what
    changes the port, for the message. Binds as uvicorn does (``SO_REUSEADDR``)."""
    if port == 0:
        return
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise PortInUseError(name, host, port, setting) from error
        raise ServerStartError(name, host, port, error.strerror or str(error)) from error


class AppServer:
    """Serve ``app`` on ``host:port`` from a daemon thread until :meth:`stop`."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "server",
        start_timeout: float = 15.0,
        setting: str = "",
    ) -> None:
        self.app, self.host, self.name, self.start_timeout = app, host, name, start_timeout
        self.setting = setting
        """What changes the port (``serving.port``, ``--port``), named if it is in use."""
        self.port = port or _free_port(host)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        check_listen(self.host, self.port, self.name, self.setting)
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", access_log=False
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=server.run, name=f"perfml-{self.name}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not server.started:
            if not self._thread.is_alive():
                raise ServerStartError(self.name, self.host, self.port, "it exited at start")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(self.name, self.host, self.port, "timed out starting")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Finish the requests in flight and stop (idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port
