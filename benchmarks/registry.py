"""Registry latency: register and resolve with many versions stored, SQLite and PostgreSQL.

Claims measured:
- ``register`` latency (p50/p99) while the store grows to 10,000 versions;
- ``resolve("name@production")`` latency (p50/p99) with 10,000 versions stored — the lookup
  serving makes on every reload — against the floor of the same row fetched with one raw
  ``sqlite3`` query on the same database (ratio floor / perfml). Target: p99 under 2 ms on
  SQLite.

PostgreSQL is measured when its server binaries are installed (the test suite's
``PostgresServer`` starts one on loopback).

    python benchmarks/registry.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from perfml.metadata import MetadataDatabase
from perfml.registry import FilesystemArtifactStore, ModelRegistry


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3,
        "mean_ms": statistics.fmean(ordered) * 1e3,
    }


def timed(call: Callable[[], object], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        begin = time.perf_counter()
        call()
        samples.append(time.perf_counter() - begin)
    return samples


def fill(registry: ModelRegistry, scratch: Path, versions: int) -> list[float]:
    """Register ``versions`` versions (spread over 10 models); the latency of each."""
    samples = []
    for i in range(versions):
        path = scratch / "model.bin"
        path.write_bytes(os.urandom(2048) + i.to_bytes(8, "little"))
        begin = time.perf_counter()
        registry.register(f"model-{i % 10}", path, detector="streaming", metrics={"i": i})
        samples.append(time.perf_counter() - begin)
    registry.promote("model-3", 7)
    return samples


def measure(url: str, scratch: Path, versions: int, resolves: int) -> dict[str, object]:
    with MetadataDatabase(url) as database:
        registry = ModelRegistry(
            database, FilesystemArtifactStore(scratch / "artifacts"), deliver_in_background=False
        )
        register = fill(registry, scratch, versions)
        registry.resolve("model-3@production")  # warm the connection pool
        resolve = timed(lambda: registry.resolve("model-3@production"), resolves)
    return {
        "versions": versions,
        "register": percentiles(register[-min(len(register), 1000) :]),
        "resolve": percentiles(resolve),
    }


def sqlite_floor(path: Path, resolves: int) -> dict[str, float]:
    """One raw query for the same row: the least any resolve on this database can cost."""
    con = sqlite3.connect(path)
    query = (
        "SELECT v.* FROM model_versions v JOIN models m ON m.id = v.model_id "
        "JOIN aliases a ON a.model_id = m.id AND a.version = v.version "
        "WHERE m.name = ? AND a.alias = ?"
    )
    samples = timed(lambda: con.execute(query, ("model-3", "production")).fetchall(), resolves)
    con.close()
    return percentiles(samples)


def postgres(stack: ExitStack) -> str | None:
    """A PostgreSQL URL on loopback, or None when the server binaries are missing."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        from tests.integration.services import PostgresServer, require_postgres_bin_dir

        require_postgres_bin_dir()
    except BaseException as missing:  # pytest's skip is a BaseException
        print(f"PostgreSQL not measured: {missing}", file=sys.stderr)
        return None
    server = stack.enter_context(PostgresServer(Path(stack.enter_context(_tempdir()))))
    return server.url


def _tempdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="perfml-bench-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 versions, under a minute")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    versions = 1_000 if args.quick else 10_000
    resolves = 2_000 if args.quick else 10_000
    figures: dict[str, object] = {}
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(_tempdir()))
        db = scratch / "registry.db"
        figures["sqlite"] = measure(f"sqlite:///{db}", scratch, versions, resolves)
        figures["sqlite_floor"] = sqlite_floor(db, resolves)
        url = postgres(stack)
        if url is not None:
            pg_scratch = Path(stack.enter_context(_tempdir()))
            figures["postgresql"] = measure(url, pg_scratch, versions, resolves)
    sqlite = figures["sqlite"]
    floor = figures["sqlite_floor"]
    assert isinstance(sqlite, dict)
    assert isinstance(floor, dict)
    figures["resolve_p99_ms_sqlite"] = sqlite["resolve"]["p99_ms"]
    figures["resolve_vs_raw_sqlite"] = floor["p50_ms"] / sqlite["resolve"]["p50_ms"]
    print(f"{'backend':<12} {'op':<9} {'versions':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for backend in ("sqlite", "postgresql"):
        result = figures.get(backend)
        if not isinstance(result, dict):
            continue
        for op in ("register", "resolve"):
            p = result[op]
            print(
                f"{backend:<12} {op:<9} {result['versions']:>9,} "
                f"{p['p50_ms']:>8.3f} {p['p99_ms']:>8.3f}"
            )
    print(
        f"{'sqlite raw':<12} {'resolve':<9} {versions:>9,} {floor['p50_ms']:>8.3f} "
        f"{floor['p99_ms']:>8.3f}   (floor; perfml/floor p50 ratio "
        f"{figures['resolve_vs_raw_sqlite']:.2f})"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
