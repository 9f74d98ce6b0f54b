"""Long-format files: one point per row, ``metric, entity, ts, value``, in CSV or Parquet.

``ts`` (or ``timestamp``) is ISO 8601 (``2024-01-31 12:00:00``, ``2024-01-31T12:00:00Z``;
naive times are UTC) or Unix seconds. Reading streams the file in batches, so a file larger
than memory can be ingested; the first bad row stops the read with an error naming the file,
the line (CSV; the row for Parquet) and the value — and since the store writes all or nothing,
nothing of the file is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from perfml.featurestore.schema import LONG_SCHEMA, TIMESTAMP_TYPE
from perfml.sources.errors import SourceError

COLUMNS = ("metric", "entity", "ts", "value")
ALIASES = {"timestamp": "ts", "time": "ts"}
_BLOCK_BYTES = 16 << 20


class FileFormatError(SourceError):
    """A long-format file cannot be read as points; names the file, the line and the value."""

    def __init__(
        self, path: Path, problem: str, line: int | None = None, unit: str = "line"
    ) -> None:
        self.path = path
        self.line = line
        where = f"{path} {unit} {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}; nothing was written")


def read_points(path: Path, drop_nonfinite: bool = False) -> Iterator[tuple[pa.Table, str]]:
    """Batches of points in LONG_SCHEMA, each named by the file for the store's messages."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise FileFormatError(path, "no such file")
    if suffix in (".parquet", ".pq"):
        yield from _read_parquet(path, drop_nonfinite)
    elif suffix in (".csv", ".txt"):
        yield from _read_csv(path, drop_nonfinite)
    else:
        raise FileFormatError(path, f"unknown file type {suffix!r} (expected .csv or .parquet)")


def _columns(path: Path, names: list[str], unit: str) -> dict[str, str]:
    """Map the file's column names to the long format's, or say what is missing or extra."""
    mapping: dict[str, str] = {}
    for name in names:
        target = ALIASES.get(name.strip().lower(), name.strip().lower())
        if target not in COLUMNS:
            raise FileFormatError(
                path, f"unexpected column {name!r} (expected {', '.join(COLUMNS)})", 1, unit
            )
        if target in mapping.values():
            raise FileFormatError(path, f"column {target!r} appears twice", 1, unit)
        mapping[name] = target
    missing = [c for c in COLUMNS if c not in mapping.values()]
    if missing:
        raise FileFormatError(
            path,
            f"missing column(s) {', '.join(repr(c) for c in missing)} "
            f"(found {', '.join(repr(n) for n in names) or 'none'})",
            1 if unit == "line" else None,
            unit,
        )
    return mapping


def _read_csv(path: Path, drop_nonfinite: bool) -> Iterator[tuple[pa.Table, str]]:
    invalid: list[str] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append(row.text)
        return "skip"

    with open(path, encoding="utf-8", errors="replace") as head:
        header = next(iter(head), "").strip()
    if not header:
        raise FileFormatError(path, "is empty (expected a header: metric,entity,ts,value)")
    names = [n.strip().strip('"') for n in header.split(",")]
    mapping = _columns(path, names, "line")
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=False
        ),
    )
    rows_before = 0
    for batch in reader:
        if invalid:
            text = invalid[0]
            raise FileFormatError(
                path,
                f"malformed row {text!r} (expected {len(names)} fields, "
                f"found {len(text.split(','))})",
                _line_of_text(path, text),
            )
        table = pa.Table.from_batches([batch]).rename_columns([mapping[n] for n in names])
        try:
            points = _convert(table, drop_nonfinite)
        except _BadValueError as bad:
            line = _line_of_row(path, rows_before + bad.row)
            raise FileFormatError(path, bad.problem, line) from None
        rows_before += batch.num_rows
        yield points, str(path)
    if invalid:
        text = invalid[0]
        raise FileFormatError(
            path,
            f"malformed row {text!r} (expected {len(names)} fields)",
            _line_of_text(path, text),
        )


def _read_parquet(path: Path, drop_nonfinite: bool) -> Iterator[tuple[pa.Table, str]]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FileFormatError(path, f"is not a Parquet file ({exc})") from None
    names = parquet.schema_arrow.names
    mapping = _columns(path, names, "row")
    rows_before = 0
    for batch in parquet.iter_batches(batch_size=1 << 20):
        table = pa.Table.from_batches([batch]).rename_columns([mapping[n] for n in names])
        try:
            points = _convert(table, drop_nonfinite)
        except _BadValueError as bad:
            raise FileFormatError(path, bad.problem, rows_before + bad.row + 1, "row") from None
        rows_before += batch.num_rows
        yield points, str(path)


class _BadValueError(Exception):
    def __init__(self, row: int, problem: str) -> None:
        self.row = row
        self.problem = problem


def _convert(table: pa.Table, drop_nonfinite: bool) -> pa.Table:
    """LONG_SCHEMA columns from text or typed ones; raises _BadValueError at the first bad row."""
    columns = {}
    for name in ("metric", "entity"):
        column = table.column(name)
        if column.null_count:
            raise _BadValueError(_first(pc.is_null(column)), f"{name} is empty")
        text = column.cast(pa.string())
        empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0)
        if pc.any(empty).as_py():
            raise _BadValueError(_first(empty), f"{name} is empty")
        columns[name] = text
    columns["ts"] = _timestamps(table.column("ts"))
    values = _numbers(table.column("value"))
    if not drop_nonfinite:
        finite = np.isfinite(values.to_numpy(zero_copy_only=False))
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise _BadValueError(
                row,
                f"value {values[row].as_py()!r} is not finite "
                "(pass --drop-nonfinite to drop and count such points)",
            )
    columns["value"] = values
    return pa.table(columns, schema=LONG_SCHEMA)


def _numbers(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if column.null_count:
        raise _BadValueError(_first(pc.is_null(column)), "value is empty")
    try:
        return column.cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    for row, text in enumerate(column.to_pylist()):
        try:
            float(text)
        except (TypeError, ValueError):
            raise _BadValueError(row, f"value {text!r} is not a number") from None
    raise _BadValueError(0, f"values of type {column.type} are not numbers")


def _timestamps(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if column.null_count:
        raise _BadValueError(_first(pc.is_null(column)), "ts is empty")
    if pa.types.is_timestamp(column.type):
        if column.type.tz is None:
            column = pc.assume_timezone(column, "UTC")
        return column.cast(TIMESTAMP_TYPE)
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return _from_seconds(column.cast(pa.float64()).to_numpy())
    for target in (pa.timestamp("ms"), TIMESTAMP_TYPE):
        try:
            parsed = column.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        return pc.assume_timezone(parsed, "UTC") if target.tz is None else parsed
    try:
        return _from_seconds(column.cast(pa.float64()).to_numpy())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # Mixed spellings, or a bad one: parse each, which also finds the culprit.
    millis = [_parse_one(row, text) for row, text in enumerate(column.to_pylist())]
    return pa.chunked_array([pa.array(millis, pa.int64()).cast(TIMESTAMP_TYPE)])


def _parse_one(row: int, text: str) -> int:
    try:
        return round(float(text) * 1000)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _BadValueError(row, f"ts {text!r} is not a time (ISO 8601 or Unix seconds)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _from_seconds(seconds: np.ndarray) -> pa.ChunkedArray:
    if not np.isfinite(seconds).all():
        row = int(np.flatnonzero(~np.isfinite(seconds))[0])
        raise _BadValueError(row, f"ts {float(seconds[row])!r} is not a time")
    millis = np.round(seconds * 1000).astype(np.int64)
    return pa.chunked_array([pa.array(millis).cast(TIMESTAMP_TYPE)])


def _first(mask: pa.ChunkedArray) -> int:
    return int(np.flatnonzero(mask.to_numpy(zero_copy_only=False))[0])


def _line_of_row(path: Path, row: int) -> int:
    """The 1-based physical line of data row ``row`` (0-based), skipping blank lines."""
    seen = -1
    with open(path, encoding="utf-8", errors="replace") as lines:
        next(lines, None)
        for number, line in enumerate(lines, start=2):
            if line.strip():
                seen += 1
                if seen == row:
                    return number
    return row + 2


def _line_of_text(path: Path, text: str) -> int | None:
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if line.rstrip("\r\n") == text:
                return number
    return None
