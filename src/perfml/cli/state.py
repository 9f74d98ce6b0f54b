"""What every command shares: the settings, the workspace (its parts) and the consoles."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from perfml.config import Settings, load_settings
from perfml.featurestore import FeatureStore
from perfml.workspace import NoWorkspaceError, Workspace

CREATING = frozenset(
    {"init", "demo", "generate", "ingest", "train", "pipeline", "up", "live", "receive"}
)
"""The commands that create the workspace if its folder does not exist; the others only read
one, and a folder that is not there is a mistyped ``-w``."""

# Piped output is not cut to 80 columns: tables stay whole for grep and for logs.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True)


@dataclass
class CliState:
    """The global options, the settings they lead to and the workspace of those settings
    (each made once, on first use; the workspace is closed when the command ends)."""

    config: Path | None = None
    workspace: Path | None = None
    debug: bool = False
    command: str | None = None
    """The command run (``models``, ``up``…): whether it may create the workspace."""
    creates: bool = False
    """Set by a subcommand that creates the workspace although its group only reads."""
    _settings: Settings | None = field(default=None, repr=False)
    _workspace: Workspace | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            settings = load_settings(self.config)
            if self.workspace is not None:
                settings = settings.model_copy(update={"workspace": self.workspace})
            self._settings = settings
        return self._settings

    def parts(self) -> Workspace:
        """The workspace's parts (:class:`~perfml.workspace.Workspace`); a command that only
        reads fails (:class:`~perfml.workspace.NoWorkspaceError`) if its folder is missing."""
        if self._workspace is None:
            workspace = Workspace(self.settings, actor=None)
            creates = self.creates or self.command in CREATING
            if not creates and not workspace.exists():
                raise NoWorkspaceError(workspace.path)
            self._workspace = workspace
        return self._workspace

    def store(self) -> FeatureStore:
        return self.parts().store()

    def close(self) -> None:
        if self._workspace is not None:
            self._workspace.close()
            self._workspace = None


def state(ctx: typer.Context) -> CliState:
    found = ctx.find_root().obj
    return found if isinstance(found, CliState) else CliState()


def progress() -> Progress:
    """A progress bar on stderr (plain lines when stderr is not a terminal)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )


@contextmanager
def stop_on_signals(stop: threading.Event | None = None) -> Iterator[threading.Event]:
    """An event that SIGINT and SIGTERM set while inside, instead of interrupting whatever
    runs: a long-running command waits on it and then stops its parts cleanly."""
    stopping = stop or threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
