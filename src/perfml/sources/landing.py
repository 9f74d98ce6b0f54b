"""Durable acknowledgement: points are logged and synced before a sender is told they arrived.

:class:`Landing` stands between a receiver and the feature store. :meth:`Landing.accept`
appends the points to a write-ahead log (segments of checksummed Arrow IPC records under its
folder) and returns only once the log is on disk (``fsync``; requests arriving together share
one). A flusher thread moves what was logged into the store every ``flush_interval`` and then
removes the segments; on start, segments a crash left behind are replayed into the store first.
A torn last record was never acknowledged and is skipped.

>>> import tempfile, pyarrow as pa
>>> from datetime import datetime, UTC
>>> from perfml.featurestore import FeatureStore
>>> folder = tempfile.mkdtemp()
>>> points = pa.table({"metric": ["up"], "entity": ["web-1"],
...                    "ts": [datetime(2024, 1, 1, tzinfo=UTC)], "value": [1.0]})
>>> with Landing(FeatureStore(f"{folder}/store"), f"{folder}/landing") as landing:
...     landing.accept(points)
...     landing.pending
1
>>> FeatureStore(f"{folder}/store").read().column("value").to_pylist()
[1.0]

``on_stored`` is the hand-over to what follows the store (the live scoring): after each commit
to the store it is called, from the flusher thread alone, with the points that commit made new
to it, sorted by metric, entity and ts: one point per key, and only points later than any
already handed over for their series. Each point is handed over at most once, also across a
crash (segments are removed before the call, so a replay hands over only what was not).
"""

from __future__ import annotations

import logging
import os
import re
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from perfml.featurestore import FeatureStore
from perfml.featurestore.points import normalize
from perfml.featurestore.schema import READ_SCHEMA
from perfml.sources.remote_write_errors import LandingClosedError, LandingOverloadedError

log = logging.getLogger(__name__)

OnStored = Callable[[pa.Table], None]
"""Called with the points a flush newly stored (``READ_SCHEMA``), in order, from one thread."""

_HEADER = struct.Struct("<4sII")  # magic, payload length, CRC-32 of the payload
_MAGIC = b"PMLW"
_SEGMENT = re.compile(r"^segment-(\d{12})\.wal$")


@dataclass(frozen=True)
class FlushReport:
    """What one flush did: points moved to the store and points newly handed to ``on_stored``."""

    stored: int = 0
    handed_over: int = 0
    segments_removed: int = 0


@dataclass(frozen=True)
class Replayed:
    """What a start found in the log: whole records replayed and torn tails skipped."""

    records: int
    points: int
    torn: int


class Landing:
    """Acknowledged points, logged to disk until they are in the feature store.

    ``max_pending`` bounds the points accepted but not yet stored: beyond it :meth:`accept`
    raises :class:`LandingOverloadedError` (a 503 with ``Retry-After``), and the sender retries
    later. ``flush_interval`` is in seconds. Use as a context manager, or :meth:`start` and
    :meth:`close` (which stores everything still pending).
    """

    def __init__(
        self,
        store: FeatureStore,
        folder: str | os.PathLike[str],
        *,
        flush_interval: float = 2.0,
        max_pending: int = 2_000_000,
        on_stored: OnStored | None = None,
    ) -> None:
        self.store = store
        self.folder = Path(folder)
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.on_stored = on_stored
        self.replayed = Replayed(0, 0, 0)
        self.stored = 0
        """Points written to the store by this landing (replayed ones included)."""
        self._write_lock = threading.Lock()  # the open segment, the pending tables
        self._sync_lock = threading.Lock()  # one fsync at a time; taken before _write_lock
        self._flush_lock = threading.Lock()  # one flush at a time
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._closed_segments: list[Path] = []
        self._fd: int | None = None
        self._segment: Path | None = None
        self._next_segment = 0
        self._written = 0  # records written to the open segment
        self._synced = 0  # of which synced
        self._generation = 0  # bumped at each rotation: a sync of an older segment is done
        self._handed: dict[tuple[str, str], int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Replay what a previous run logged but did not store, then start the flusher."""
        if self._started:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        segments = _segments(self.folder)
        self._next_segment = _segment_number(segments[-1]) + 1 if segments else 0
        if segments:
            self.replayed = self._replay(segments)
        self._open_segment()
        self._started = True
        self._thread = threading.Thread(
            target=self._run, name="perfml-landing-flusher", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> FlushReport:
        """Refuse new points, store every pending one and remove the log (idempotent)."""
        with self._write_lock:
            self._closing = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if not self._started:
            return FlushReport()
        report = self.flush()
        with self._sync_lock, self._write_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._segment is not None and not self._pending:
                self._segment.unlink(missing_ok=True)
                self._segment = None
        self._started = False
        return report

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Points acknowledged but not yet in the store."""
        return self._pending_rows

    # -- accepting -------------------------------------------------------------------------

    def accept(self, table: pa.Table) -> None:
        """Log ``table`` (long points) durably; when this returns, they will reach the store.

        Raises :class:`LandingOverloadedError` when the pending points would pass
        ``max_pending`` and :class:`LandingClosedError` once closing.
        """
        if table.num_rows == 0:
            return
        table = normalize(table, "accepted points").table
        record = _record(table)
        with self._write_lock:
            if self._closing or self._fd is None:
                raise LandingClosedError(str(self.folder))
            if self._pending_rows + table.num_rows > self.max_pending:
                raise LandingOverloadedError(
                    self._pending_rows, table.num_rows, self.max_pending,
                    retry_after=max(1, round(self.flush_interval)),
                )  # fmt: skip
            _write_all(self._fd, record)
            self._written += 1
            mine, generation = self._written, self._generation
            self._pending.append(table)
            self._pending_rows += table.num_rows
        self._sync(mine, generation)

    def _sync(self, record: int, generation: int) -> None:
        """Return once record number ``record`` of segment ``generation`` is on disk: a caller
        that finds the lock taken waits for that fsync, which often covers its record too."""
        with self._sync_lock:
            with self._write_lock:
                if generation != self._generation or self._synced >= record:
                    return  # a rotation synced and closed that segment, or a peer's sync did
                fd, upto = self._fd, self._written
            if fd is not None:
                os.fsync(fd)
            with self._write_lock:
                if generation == self._generation:
                    self._synced = max(self._synced, upto)

    # -- flushing --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                self.flush()
            except Exception:  # the points stay logged and pending; the next flush retries
                log.exception("storing the landed points failed; retrying in %ss",
                              self.flush_interval)  # fmt: skip

    def flush(self) -> FlushReport:
        """Store every point accepted so far, remove its segments, hand the new ones over."""
        with self._flush_lock:
            with self._sync_lock, self._write_lock:
                if not self._pending:
                    return FlushReport()
                tables, rows = self._pending, self._pending_rows
                self._pending = []
                segments = [*self._closed_segments]
                if self._segment is not None:
                    segments.append(self._segment)
                if self._fd is not None:
                    os.fsync(self._fd)
                    os.close(self._fd)
                    self._fd = None
                self._closed_segments = []
                self._segment = None
                if not self._closing:
                    self._open_segment()
            return self._store(tables, rows, segments)

    def _store(self, tables: list[pa.Table], rows: int, segments: list[Path]) -> FlushReport:
        points = _latest_per_key(pa.concat_tables(tables))
        try:
            self.store.write(points, where="landed points")
        except BaseException:
            with self._write_lock:  # keep them, in order, before what came since
                self._pending = tables + self._pending
                self._closed_segments = segments + self._closed_segments
            raise
        for segment in segments:
            segment.unlink(missing_ok=True)
        _sync_folder(self.folder)
        with self._write_lock:
            self._pending_rows -= rows
            self.stored += points.num_rows
        fresh = self._fresh(points)
        if self.on_stored is not None and fresh.num_rows:
            try:
                self.on_stored(fresh)
            except Exception:  # stored all the same; the consumer reads the store to catch up
                log.exception("on_stored failed on %d stored points", fresh.num_rows)
        return FlushReport(points.num_rows, fresh.num_rows, len(segments))

    def _fresh(self, points: pa.Table) -> pa.Table:
        """The points later than any handed over before for their series (``points`` sorted)."""
        metric = points.column("metric").combine_chunks()
        entity = points.column("entity").combine_chunks()
        ts = points.column("ts").combine_chunks().cast(pa.int64()).to_numpy()
        metrics, entities = metric.dictionary.to_pylist(), entity.dictionary.to_pylist()
        m_codes, e_codes = metric.indices.to_numpy(), entity.indices.to_numpy()
        keep = np.ones(len(ts), dtype=bool)
        starts = np.flatnonzero(
            np.concatenate(([True], (m_codes[1:] != m_codes[:-1]) | (e_codes[1:] != e_codes[:-1])))
        )
        ends = np.append(starts[1:], len(ts))
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            key = (metrics[m_codes[start]], entities[e_codes[start]])
            handed = self._handed.get(key)
            if handed is not None:
                keep[start:end] = ts[start:end] > handed
            self._handed[key] = max(int(ts[end - 1]), handed if handed is not None else -(2**63))
        return points if keep.all() else points.filter(pa.array(keep))

    # -- the log ---------------------------------------------------------------------------

    def _open_segment(self) -> None:
        path = self.folder / f"segment-{self._next_segment:012d}.wal"
        self._next_segment += 1
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _sync_folder(self.folder)
        self._segment = path
        self._written = self._synced = 0
        self._generation += 1

    def _replay(self, segments: list[Path]) -> Replayed:
        tables: list[pa.Table] = []
        torn = 0
        for segment in segments:
            found, whole = _read_segment(segment)
            tables.extend(found)
            torn += 0 if whole else 1
            if not whole:
                log.warning("%s ends with a torn record (never acknowledged): skipped", segment)
        points = sum(t.num_rows for t in tables)
        if tables:
            with self._write_lock:
                self._pending_rows += points
            self._store(tables, points, segments)
        else:
            for segment in segments:
                segment.unlink(missing_ok=True)
            _sync_folder(self.folder)
        return Replayed(len(tables), points, torn)


def _record(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    payload: bytes = sink.getvalue().to_pybytes()
    return _HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload


def _read_segment(path: Path) -> tuple[list[pa.Table], bool]:
    """The whole records of a segment, and whether it ended on a record boundary."""
    data = path.read_bytes()
    tables, end = [], 0
    for after, payload in _records(data):
        tables.append(pa.ipc.open_stream(payload).read_all())
        end = after
    return tables, end == len(data)


def _records(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Each whole record's payload with the offset just after it; stops at the first bad one."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        magic, length, checksum = _HEADER.unpack_from(data, offset)
        end = offset + _HEADER.size + length
        if magic != _MAGIC or end > len(data):
            return
        payload = data[offset + _HEADER.size : end]
        if zlib.crc32(payload) != checksum:
            return
        offset = end
        yield offset, payload


def _latest_per_key(table: pa.Table) -> pa.Table:
    """One point per ``(metric, entity, ts)``, the last accepted, sorted by that key."""
    table = table.cast(READ_SCHEMA) if table.schema != READ_SCHEMA else table
    table = table.unify_dictionaries().combine_chunks()
    metric = table.column("metric").chunk(0)
    entity = table.column("entity").chunk(0)
    # Sort by the names, not the codes: codes follow first appearance.
    m_rank = pc.rank(metric.dictionary, sort_keys="ascending").to_numpy()[metric.indices]
    e_rank = pc.rank(entity.dictionary, sort_keys="ascending").to_numpy()[entity.indices]
    ts = table.column("ts").chunk(0).cast(pa.int64()).to_numpy()
    order = np.lexsort((ts, e_rank, m_rank))  # stable: of equal keys the last accepted is last
    m_rank, e_rank, ts = m_rank[order], e_rank[order], ts[order]
    last = np.concatenate(
        ((m_rank[1:] != m_rank[:-1]) | (e_rank[1:] != e_rank[:-1]) | (ts[1:] != ts[:-1]), [True])
    )
    return table.take(pa.array(order[last]))


def _segments(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _SEGMENT.match(p.name))


def _segment_number(path: Path) -> int:
    found = _SEGMENT.match(path.name)
    return int(found.group(1)) if found else -1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync_folder(folder: Path) -> None:
    """Make a file's creation or removal in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
