"""A registering process killed at any moment leaves no half version."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from perfml.registry import FilesystemArtifactStore, ModelRegistry
from perfml.registry.artifacts import sha256_of

WRITER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from perfml.registry import FilesystemArtifactStore, ModelRegistry

    url, store, scratch = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    registry = ModelRegistry(url, FilesystemArtifactStore(store), deliver_in_background=False)
    registry.add_webhook("http://127.0.0.1:9/none", "k")
    for i in range(10_000):
        path = scratch / f"m{i}.bin"
        path.write_bytes(os.urandom(4 << 20))
        registry.register("cpu", path, detector="seasonal", metrics={"i": i})
        print(i, flush=True)
    """
)


def consistent(url: str, store: Path, tmp: Path) -> int:
    with ModelRegistry(url, FilesystemArtifactStore(store), deliver_in_background=False) as reg:
        versions = reg.versions("cpu") if reg.models() else []
        for version in versions:
            fetched = reg.fetch(version.ref, tmp / f"check-{version.version}")
            assert sha256_of(fetched) == version.digest
    return len(versions)


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
    assert seen > 0  # some registrations did complete between the kills


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
    registry = ModelRegistry(url, FilesystemArtifactStore(store), deliver_in_background=False)
    stored = {p.name for p in store.glob("sha256/*/*") if not p.name.startswith(".")}
    versions = registry.versions("cpu") if registry.models() else []
    assert {v.digest for v in versions} <= stored
    assert consistent(url, store, tmp_path) == len(versions)
    again = registry.register("cpu", scratch / "m0.bin", detector="seasonal")
    assert again.version >= 1
    registry.close()
