"""Writing a file so that readers see the old one or the whole new one, never half of it.

>>> import tempfile, pathlib
>>> target = pathlib.Path(tempfile.mkdtemp()) / "state.json"
>>> with atomic_output(target) as temporary:
...     _ = temporary.write_text("{}")
>>> target.read_text()
'{}'
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block succeeds, move it onto ``path``.

    ``os.replace`` within one folder is atomic, so readers never see a half-written file; if
    the block raises, the temporary file goes. With ``durable`` the file and its folder are
    also flushed to disk before the block returns, so the new file survives a power loss once
    written — what a commit point (a manifest, a model artifact) needs. The parent folders are
    created; the file is readable by all (``mkstemp`` alone would make it private).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        temporary.chmod(0o644)
        if durable:
            _fsync(temporary, os.O_RDONLY)
        os.replace(temporary, target)
        if durable:
            _fsync(target.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    finally:
        temporary.unlink(missing_ok=True)


def _fsync(path: Path, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
