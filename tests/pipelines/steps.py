"""Toy steps for the runner tests (module level, so that a worker process can import them)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from perfml.pipelines import Preconditions, Resources, step


@step(outputs=("table",), resources=Resources(cpu=1, memory="256Mi"))
def extract(rows: int, table: Path) -> int:
    table.write_text("\n".join(str(i) for i in range(rows)))
    return rows


@step(cache=True, resources=Resources(cpu=1, memory="256Mi"))
def total(table: Path, scale: int, log_to: str = "") -> int:
    if log_to:  # lets a test count the real executions
        with open(log_to, "a") as f:
            f.write("ran\n")
    return scale * sum(int(x) for x in table.read_text().split())


@step
def crash(message: str) -> None:
    print("loading the data")
    print(f"fatal: {message}", file=sys.stderr)
    sys.exit(3)


@step(timeout=0.5)
def hang(pid_file: str) -> None:
    child = subprocess.Popen(["sleep", "30"])
    Path(pid_file).write_text(str(child.pid))
    time.sleep(30)


@step(retries=2, backoff=0.2)
def flaky(attempts_file: str) -> None:
    with open(attempts_file, "a") as f:
        f.write(f"{time.time()}\n")
    raise RuntimeError("the API said no")


VOLUME = Path(tempfile.gettempdir()) / f"perfml-test-volume-{os.getuid()}"


@step(needs=Preconditions(paths=(str(VOLUME),), env=("PERFML_TEST_TOKEN",)))
def needs_volume() -> str:
    return VOLUME.read_text() + os.environ["PERFML_TEST_TOKEN"]


@step(resources=Resources(cpu=1, memory="256Mi"))
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@step(resources=Resources(cpu=0.5, memory="128Mi"))
def hog(megabytes: int) -> int:
    held = bytearray(megabytes * 2**20)
    for i in range(0, len(held), 4096):
        held[i] = 1
    time.sleep(5)
    return len(held)


class Ledger:
    """A toy part: appends lines to a file of the folder its parts were opened on."""

    def __init__(self, folder: Path, name: str) -> None:
        self.path = folder / f"{name}.txt"

    def add(self, line: str) -> None:
        with self.path.open("a") as f:
            f.write(line + "\n")


class LedgerParts:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def part(self, name: str) -> Ledger:
        return Ledger(self.folder, name)


@contextmanager
def ledger_parts(config: Mapping[str, Any]) -> Iterator[LedgerParts]:
    """A parts factory: each part a :class:`Ledger` in ``config["folder"]``; writes
    ``closed`` there when the job is done with them."""
    folder = Path(config["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield LedgerParts(folder)
    finally:
        (folder / "closed").write_text("yes")


@step(resources=Resources(cpu=1, memory="256Mi"))
def note(ledger: Ledger, line: str) -> str:
    ledger.add(line)
    return str(ledger.path)
