"""The score log: every score the live loop and batch scoring gave, as Parquet files.

A row is one scored point: the model and version that scored it, the metric and entity of the
series, its time and value, the score and the version's threshold (a point is *anomalous* when
its score is at or over the threshold). Files live under ``<folder>/<model>/``:

- ``live-<seq>.parquet``: what the live loop flushed, numbered in order. A checkpoint of the
  live states records the last number it covers; after a crash, the files past it are removed
  (:meth:`ScoreLog.truncate`) and their points scored again from the restored states, so a
  point is never scored twice by one loop;
- ``merged-<first>-<last>.parquet``: live files a checkpoint covers, merged (:meth:`merge`);
- ``batch-<id>.parquet``: a backfill (``perfml score``).

A file appears whole or not at all (written beside, then renamed). Where two files score the
same point of one model, a read keeps the one written last, so a backfill of a window the live
loop scored replaces those scores rather than doubling them.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from perfml.anomalies.errors import ScoreLogError
from perfml.atomic import atomic_output
from perfml.timeparse import parse_instant, to_epoch_ms

SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("version", pa.int32(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("entity", pa.string(), nullable=False),
        pa.field("ts", pa.int64(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("threshold", pa.float64(), nullable=False),
        pa.field("written", pa.int64(), nullable=False),
    ]
)
"""``ts`` and ``written`` in epoch milliseconds."""

_LIVE = re.compile(r"^live-(\d{12})\.parquet$")
_MERGED = re.compile(r"^merged-(\d{12})-(\d{12})\.parquet$")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_READ_ATTEMPTS = 3
Moment = datetime | str | int
"""An instant: a datetime, RFC 3339 text or epoch milliseconds."""


class ScoreLog:
    """The scores under ``folder`` (see the module's docstring)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()

    # -- writing -------------------------------------------------------------------------------

    def append_live(self, model: str, seq: int, table: pa.Table) -> Path:
        """Write the live loop's flush number ``seq`` of ``model``."""
        return self._write(model, f"live-{seq:012d}.parquet", table)

    def append_batch(self, model: str, table: pa.Table) -> Path:
        """Write a backfill's scores of ``model``."""
        return self._write(model, f"batch-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet",
                           table)  # fmt: skip

    def _write(self, model: str, name: str, table: pa.Table) -> Path:
        folder = self._model_folder(model)
        target = folder / name
        table = table.select(SCHEMA.names).cast(SCHEMA)
        with atomic_output(target, durable=True) as partial:
            pq.write_table(table, partial, compression="zstd")
        return target

    def last_live_seq(self, model: str) -> int:
        """The number of the last live flush of ``model`` on disk (0: none)."""
        last = 0
        for path in self._files(model):
            if found := _LIVE.match(path.name):
                last = max(last, int(found[1]))
            elif found := _MERGED.match(path.name):
                last = max(last, int(found[2]))
        return last

    def truncate(self, model: str, after: int) -> int:
        """Remove the live flushes of ``model`` numbered past ``after`` (a checkpoint's last);
        returns how many."""
        removed = 0
        for path in self._files(model):
            found = _LIVE.match(path.name)
            if found and int(found[1]) > after:
                path.unlink()
                removed += 1
            merged = _MERGED.match(path.name)
            if merged and int(merged[2]) > after:
                raise ScoreLogError(path, f"merges flushes past the checkpoint's {after}")
        return removed

    def merge(self, model: str, upto: int, min_files: int = 64) -> int:
        """Merge the live flushes of ``model`` numbered at most ``upto`` into one file once
        there are ``min_files`` of them; returns how many files were merged."""
        with self._lock:
            numbered = sorted(
                (int(found[1]), path)
                for path in self._files(model)
                if (found := _LIVE.match(path.name)) and int(found[1]) <= upto
            )
            if len(numbered) < min_files:
                return 0
            first, last = numbered[0][0], numbered[-1][0]
            table = pa.concat_tables(pq.read_table(path, schema=SCHEMA) for _, path in numbered)
            self._write(model, f"merged-{first:012d}-{last:012d}.parquet", table)
            for _, path in numbered:
                path.unlink()
            return len(numbered)

    # -- reading -------------------------------------------------------------------------------

    def models(self) -> list[str]:
        """The models with scores."""
        if not self.folder.is_dir():
            return []
        return sorted(
            p.name for p in self.folder.iterdir() if p.is_dir() and any(p.glob("*.parquet"))
        )

    def read(
        self,
        *,
        models: Sequence[str] | None = None,
        metrics: Sequence[str] | None = None,
        entities: Sequence[str] | None = None,
        start: Moment | None = None,
        end: Moment | None = None,
        anomalous: bool = False,
    ) -> pa.Table:
        """Scores in ``[start, end)`` (one per point of a model: the one written last), sorted
        by model, metric, entity and ts; ``anomalous``: only points at or over the threshold."""
        found = self._query(
            "SELECT *",
            """QUALIFY row_number() OVER (
                PARTITION BY model, metric, entity, ts ORDER BY written DESC) = 1
            ORDER BY model, metric, entity, ts""",
            models, metrics, entities, start, end, anomalous,
        )  # fmt: skip
        return SCHEMA.empty_table() if found is None else found.cast(SCHEMA)

    def latest_ms(self, models: Sequence[str] | None = None) -> int | None:
        """The time of the newest point scored (epoch ms), or None when there is none."""
        found = self._query("SELECT max(ts) AS last", "", models)
        last = None if found is None else found.column("last")[0].as_py()
        return None if last is None else int(last)

    def entities(
        self, start: Moment | None = None, end: Moment | None = None,
        models: Sequence[str] | None = None,
    ) -> int:  # fmt: skip
        """How many distinct entities were scored in ``[start, end)``."""
        found = self._query("SELECT count(DISTINCT entity) AS n", "", models, start=start, end=end)
        return 0 if found is None else int(found.column("n")[0].as_py())

    def _query(
        self,
        select: str,
        tail: str,
        models: Sequence[str] | None = None,
        metrics: Sequence[str] | None = None,
        entities: Sequence[str] | None = None,
        start: Moment | None = None,
        end: Moment | None = None,
        anomalous: bool = False,
    ) -> pa.Table | None:
        """``select`` over the files of ``models`` (all by default) where the filters hold, then
        ``tail``; None when there is no file. A file merged away while read: read again."""
        where: list[str] = ["TRUE"]
        args: list[object] = []
        for column, values in (("model", models), ("metric", metrics), ("entity", entities)):
            if values is not None:
                where.append(f"{column} IN (SELECT unnest(?))")
                args.append(list(values))
        for bound, op, what in ((start, ">=", "start"), (end, "<", "end")):
            if bound is not None:
                where.append(f"ts {op} ?")
                args.append(_ms(bound, what))
        if anomalous:
            where.append("score >= threshold")
        sql = f"""{select} FROM read_parquet(?, union_by_name = true)
            WHERE {" AND ".join(where)} {tail}"""
        for attempt in range(_READ_ATTEMPTS):
            files = [str(p) for model in (models or self.models()) for p in self._files(model)]
            if not files:
                return None
            try:
                with duckdb.connect() as con:
                    return con.sql(sql, params=[files, *args]).to_arrow_table()
            except duckdb.IOException as exc:
                if attempt == _READ_ATTEMPTS - 1:
                    raise ScoreLogError(self.folder, f"kept changing while read ({exc})") from None
        raise AssertionError("unreachable")

    def _model_folder(self, model: str) -> Path:
        if not _MODEL.match(model):
            raise ScoreLogError(self.folder, f"model name {model!r} cannot name a folder")
        return self.folder / model

    def _files(self, model: str) -> list[Path]:
        folder = self._model_folder(model)
        return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def _ms(moment: Moment, what: str) -> int:
    if isinstance(moment, int):
        return moment
    return to_epoch_ms(parse_instant(moment, what))
