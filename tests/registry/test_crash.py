"""A registering process killed at any moment leaves no half version."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from fixtures.registry import registry_at
from perfml.registry.artifacts import sha256_of

WRITER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from perfml.metadata import MetadataDatabase
    from perfml.registry import FilesystemArtifactStore, ModelRegistry

    url, store, scratch = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    database = MetadataDatabase(url)
    registry = ModelRegistry(database, FilesystemArtifactStore(store), deliver_in_background=False)
    registry.add_webhook("http://127.0.0.1:9/none", "k")
    for i in range(10_000):
        path = scratch / f"m{i}.bin"
        path.write_bytes(os.urandom(4 << 20))
        registry.register("cpu", path, detector="seasonal", metrics={"i": i})
        print(i, flush=True)
    """
)


def consistent(url: str, store: Path, tmp: Path) -> int:
    with registry_at(url, store) as reg:
        versions = reg.versions("cpu") if reg.models() else []
        for version in versions:
            fetched = reg.fetch(version.ref, tmp / f"check-{version.version}")
            assert sha256_of(fetched) == version.digest
    return len(versions)


def registered(url: str) -> int:
    """How many versions the database at ``url`` holds now (0 before it exists)."""
    path = Path(url.removeprefix("sqlite:///"))
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
            return int(con.execute("SELECT count(*) FROM model_versions").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return 0


def test_kills_at_random_moments_never_leave_a_half_version(tmp_path):
    url = f"sqlite:///{tmp_path}/registry.db"
    store, scratch = tmp_path / "artifacts", tmp_path / "scratch"
    scratch.mkdir()
    seen = 0
    for delay in (0.05, 0.3, 0.17, 0.55, 0.11, 0.8):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(store), str(scratch)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.communicate()
        count = consistent(url, store, tmp_path)
        assert count >= seen
        seen = count
    # On a loaded machine the writer may not get far in 0.8 s: one more, killed only once it
    # has registered more, so that the registry is also checked after completed registrations.
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, url, str(store), str(scratch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while registered(url) <= seen and time.monotonic() < deadline:
        time.sleep(0.1)
    writer.send_signal(signal.SIGKILL)
    writer.communicate()
    assert consistent(url, store, tmp_path) > seen  # some registrations did complete


def test_a_kill_during_the_artifact_copy_leaves_no_version(tmp_path):
    url = f"sqlite:///{tmp_path}/registry.db"
    store, scratch = tmp_path / "artifacts", tmp_path / "scratch"
    scratch.mkdir()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, url, str(store), str(scratch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not list(store.glob("sha256/*/.*.tmp")):
        assert writer.poll() is None
        assert time.monotonic() < deadline
    writer.send_signal(signal.SIGKILL)
    writer.communicate()
    with registry_at(url, store) as registry:
        stored = {p.name for p in store.glob("sha256/*/*") if not p.name.startswith(".")}
        versions = registry.versions("cpu") if registry.models() else []
        assert {v.digest for v in versions} <= stored
        assert consistent(url, store, tmp_path) == len(versions)
        again = registry.register("cpu", scratch / "m0.bin", detector="seasonal")
        assert again.version >= 1
