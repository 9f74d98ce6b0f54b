"""The Numenta Anomaly Benchmark (NAB) corpus format: labelled series as CSV files plus JSON.

A NAB corpus is a folder::

    CORPUS/data/<category>/<name>.csv        timestamp,value   (timestamp YYYY-MM-DD HH:MM:SS, UTC)
    CORPUS/labels/combined_windows.json      {"<category>/<name>.csv": [[start, end], ...], ...}

Each window is an anomaly: ``start`` and ``end`` (``YYYY-MM-DD HH:MM:SS.ffffff``) are rows of the
file, both included. perfml reads NAB corpora to test detectors against labels made by people, and
writes its own generated fleets in the same layout so that any NAB tool can score them.

A series is an Arrow table of ``ts`` (``timestamp[ms, UTC]``) and ``value`` (``float64``), with
timestamps in order and every value finite; :func:`read_series` refuses anything else with a
:class:`~perfml.sources.errors.NabFormatError` naming the file, the line and the value.

Timestamps may repeat: NAB's own files do (``ec2_disk_write_bytes_1ef3de.csv`` and
``ec2_network_in_5abac7.csv`` hold twelve rows stamped ``2014-03-09 03:00:00``, the hour lost to
the US daylight-saving change squashed onto one instant). NAB scores rows, not instants, so
:func:`read_series` keeps every row; :func:`corpus_to_long` can drop the repeats for stores that
key points by ``(metric, entity, ts)``.

>>> import tempfile
>>> from datetime import UTC, datetime, timedelta
>>> corpus = Path(tempfile.mkdtemp())
>>> table = pa.table({"ts": pa.array([0, 300_000], TIMESTAMP_TYPE), "value": [1.5, 2.0]})
>>> write_series(corpus / "data" / "demo" / "a.csv", table)
>>> (corpus / "data" / "demo" / "a.csv").read_text()
'timestamp,value\\n1970-01-01 00:00:00,1.5\\n1970-01-01 00:05:00,2\\n'
>>> window = (datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, 0, 5, tzinfo=UTC))
>>> write_windows(corpus, {"demo/a.csv": [window]})
>>> [(s.key, s.name, len(s.windows)) for s in iter_corpus(corpus)]
[('demo/a.csv', 'a', 1)]
>>> corpus_to_long(iter_corpus(corpus)).column("entity").to_pylist()
['a', 'a']
"""

import csv
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from perfml.atomic import atomic_output
from perfml.featurestore.schema import LONG_SCHEMA, METRIC_NAME, TIMESTAMP_TYPE
from perfml.sources.errors import MetricNameError, NabFormatError

COLUMNS = ("timestamp", "value")
"""The header of every NAB series file, in this order."""

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
"""Timestamps of the series files (UTC, whole seconds)."""

WINDOW_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
"""Timestamps of the window limits in ``combined_windows.json``."""

WINDOWS_FILE = Path("labels") / "combined_windows.json"
"""Where a corpus keeps its anomaly windows, relative to the corpus folder."""

SERIES_SCHEMA = pa.schema(
    [
        pa.field("ts", TIMESTAMP_TYPE, nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)
"""What :func:`read_series` returns and :func:`write_series` takes."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_MS = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)
_MAX_MS = (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)

Window = tuple[datetime, datetime]
"""One labelled anomaly: its first and last instant (both rows of the series, both included)."""


@dataclass(frozen=True)
class NabSeries:
    """One series of a corpus: where its file is and the windows labelled on it.

    ``key`` is how ``combined_windows.json`` names it (``realAWSCloudwatch/ec2_cpu.csv``),
    ``category`` its folder under ``data/`` and ``name`` the file stem (``ec2_cpu``).
    """

    key: str
    category: str
    name: str
    path: Path
    windows: tuple[Window, ...]

    def read(self) -> pa.Table:
        """The series' points, as :func:`read_series` returns them."""
        return read_series(self.path)


def read_series(path: str | Path) -> pa.Table:
    """Read one NAB series file into a table of :data:`SERIES_SCHEMA`, rows in file order.

    Timestamps may repeat or go back (a clock set back, an exporter restarted: NAB's public
    corpus holds such files, and NAB scores their rows in file order); :func:`clock` gives the
    time a detector is shown for each row. The file is parsed by Arrow's CSV reader; only when
    that fails (or a value is not finite) is the file walked line by line to say exactly where
    and why.
    """
    path = Path(path)
    _check_header(path)
    try:
        raw = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={"timestamp": pa.string(), "value": pa.float64()},
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as error:
        _diagnose(path)
        raise NabFormatError(path, f"cannot be parsed: {error}") from error
    stamps = raw.column("timestamp").combine_chunks()
    ts = pc.strptime(stamps, format=TIME_FORMAT, unit="ms", error_is_null=True)
    ts = ts.cast(TIMESTAMP_TYPE)
    value = raw.column("value")
    ticks = ts.cast(pa.int64()).fill_null(0).to_numpy()
    # Arrow's strptime takes 2014-02-30 for March 2nd and 0:0:0 for 00:00:00: only a stamp
    # that prints back as itself is a NAB timestamp.
    if not (
        ts.null_count == 0
        and (len(stamps) == 0 or pc.all(pc.equal(_format_times(ticks), stamps)).as_py())
        and np.isfinite(value.to_numpy()).all()
    ):
        _diagnose(path)
        raise NabFormatError(path, "has a malformed timestamp or a non-finite value")
    return pa.Table.from_arrays([ts, value], schema=SERIES_SCHEMA)


def clock(ticks: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The time of each row as a series' rows are scored in file order: its timestamp, or the
    latest one before it if time went back (a row is never earlier than the rows before it).

    >>> clock(np.array([0, 60, 30, 90, 90], dtype=np.int64)).tolist()
    [0, 60, 60, 90, 90]
    """
    return np.maximum.accumulate(ticks) if ticks.size else ticks


def went_back(ticks: npt.NDArray[np.int64]) -> int:
    """How many rows have a timestamp before the one of the row above them."""
    return int((np.diff(ticks) < 0).sum()) if ticks.size > 1 else 0


def write_series(path: str | Path, table: pa.Table) -> None:
    """Write a table with columns ``ts`` and ``value`` as a NAB series file, atomically.

    Values are written in their shortest form that reads back to the same float64, so
    ``read_series(write_series(table))`` gives back ``table`` exactly. Timestamps must be whole
    seconds and in order (repeats allowed, as in NAB), values finite, or nothing is written.
    """
    path = Path(path)
    missing = [name for name in ("ts", "value") if name not in table.column_names]
    if missing:
        raise NabFormatError(path, f"cannot be written: the table has no column {missing[0]!r}")
    ts = table.column("ts").cast(TIMESTAMP_TYPE)
    value = table.column("value").cast(pa.float64())
    if ts.null_count or value.null_count:
        raise NabFormatError(path, "cannot be written: the table has missing timestamps or values")
    values = value.to_numpy()
    ticks = ts.cast(pa.int64()).to_numpy()
    if not np.isfinite(values).all():
        row = _first_bad_row(~np.isfinite(values))
        raise NabFormatError(path, f"cannot be written: value at row {row} is not finite")
    if (np.diff(ticks) < 0).any():
        row = _first_bad_row(np.diff(ticks) < 0) + 1
        raise NabFormatError(path, f"cannot be written: timestamp at row {row} goes backwards")
    if (ticks % 1000).any():
        row = _first_bad_row((ticks % 1000) != 0)
        raise NabFormatError(
            path, f"cannot be written: timestamp at row {row} is not whole seconds"
        )
    if ticks.size and not _MIN_MS <= ticks[0] <= ticks[-1] <= _MAX_MS:
        raise NabFormatError(path, "cannot be written: a timestamp is outside years 1-9999")
    text = pa.table({"timestamp": _format_times(ticks), "value": value.cast(pa.string())})
    with atomic_output(path) as temporary, temporary.open("wb") as out:
        out.write(",".join(COLUMNS).encode() + b"\n")
        pacsv.write_csv(text, out, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def read_windows(corpus: str | Path) -> dict[str, list[Window]]:
    """Read ``labels/combined_windows.json``: series key → its anomaly windows (UTC)."""
    path = Path(corpus) / WINDOWS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise NabFormatError(path, "does not exist") from error
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise NabFormatError(path, f"is not JSON: {error.msg}", line=error.lineno) from error
    if not isinstance(document, dict):
        raise NabFormatError(path, "is not a JSON object of series key → windows")
    windows: dict[str, list[Window]] = {}
    for key, entries in document.items():
        if not isinstance(entries, list):
            raise NabFormatError(path, "is not a list of [start, end]", field=key, value=entries)
        windows[key] = [_parse_window(path, key, entry) for entry in entries]
    return windows


def write_windows(corpus: str | Path, windows: Mapping[str, Sequence[Window]]) -> None:
    """Write ``labels/combined_windows.json`` atomically, formatted as NAB formats it.

    Keys are sorted and indented by four spaces; naive datetimes are taken to be UTC.
    """
    path = Path(corpus) / WINDOWS_FILE
    document = {
        key: [[_format_window_time(start), _format_window_time(end)] for start, end in entries]
        for key, entries in windows.items()
    }
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(document, indent=4, sort_keys=True), encoding="utf-8")


def iter_corpus(corpus: str | Path) -> Iterator[NabSeries]:
    """Every CSV under ``CORPUS/data/<category>/``, sorted by key, with its windows.

    The corpus must have ``labels/combined_windows.json`` (an empty ``{}`` will do).

    A series the windows file does not mention has no windows; the windows file may name
    series that are not in the corpus (NAB's names all 58, subsets ship a few).
    """
    corpus = Path(corpus)
    data = corpus / "data"
    if not data.is_dir():
        raise NabFormatError(data, "is not a folder (a NAB corpus keeps its series in data/)")
    windows = read_windows(corpus)
    found: list[NabSeries] = []
    for path in _csv_files(data):
        category = path.parent.relative_to(data).as_posix()
        if category == ".":
            raise NabFormatError(path, "is not in a category folder data/<category>/")
        key = f"{category}/{path.name}"
        entries = tuple(windows.get(key, ()))
        found.append(NabSeries(key, category, path.stem, path, entries))
    yield from sorted(found, key=lambda series: series.key)


def _csv_files(folder: Path) -> Iterator[Path]:
    """Every ``*.csv`` below ``folder``, following symlinked folders (a category linked in from
    elsewhere), each real folder once."""
    seen: set[str] = set()
    for root, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back up the tree
            folders.clear()
            continue
        seen.add(real)
        folders.sort()
        for name in sorted(files):
            if name.endswith(".csv"):
                yield Path(root) / name


def corpus_to_long(
    series: Iterable[NabSeries], metric: str | None = None, *, drop_repeated_ts: bool = False
) -> pa.Table:
    """Concatenate series into one :data:`~perfml.featurestore.schema.LONG_SCHEMA` table.

    ``metric`` is the series' category (``realAWSCloudwatch``) unless overridden, ``entity`` its
    file stem. Rows come series by series, each in file order. With ``drop_repeated_ts`` only
    the first row of each timestamp is kept, so ``(metric, entity, ts)`` is a key (without it,
    the store keeps the last row of a repeated key and counts the others as repeated).
    """
    parts = []
    for one in series:
        name = metric if metric is not None else one.category
        if not METRIC_NAME.match(name):
            origin = "the metric asked for" if metric is not None else f"category of {one.key}"
            raise MetricNameError(name, origin)
        points = one.read()
        if drop_repeated_ts and points.num_rows > 1:
            ticks = points.column("ts").cast(pa.int64()).to_numpy()
            _, first = np.unique(ticks, return_index=True)
            keep = np.zeros(len(ticks), dtype=bool)
            keep[first] = True
            points = points.filter(pa.array(keep))
        rows = points.num_rows
        parts.append(
            pa.Table.from_arrays(
                [
                    pa.array([name] * rows, pa.string()),
                    pa.array([one.name] * rows, pa.string()),
                    points.column("ts"),
                    points.column("value"),
                ],
                schema=LONG_SCHEMA,
            )
        )
    if not parts:
        return LONG_SCHEMA.empty_table()
    return pa.concat_tables(parts)


def _check_header(path: Path) -> None:
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            header = next(csv.reader(file), None)
    except FileNotFoundError as error:
        raise NabFormatError(path, "does not exist") from error
    except UnicodeDecodeError as error:
        raise NabFormatError(path, f"is not UTF-8 text: {error.reason}") from error
    if header is None:
        raise NabFormatError(path, f"is empty (expected the header {','.join(COLUMNS)})", line=1)
    for column in COLUMNS:
        if column not in header:
            problem = f"header has no column {column!r} (header is {','.join(header)!r})"
            raise NabFormatError(path, problem, line=1)
    for column in header:
        if column not in COLUMNS or header.count(column) > 1:
            problem = f"header has unexpected column {column!r} (expected {','.join(COLUMNS)})"
            raise NabFormatError(path, problem, line=1)


def _diagnose(path: Path) -> None:
    """Walk the file line by line and raise for the first line that is wrong."""
    with path.open(encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file)
        header = next(reader)
        ts_at, value_at = header.index("timestamp"), header.index("value")
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(COLUMNS):
                problem = f"has {len(row)} fields, expected {len(COLUMNS)} ({','.join(header)})"
                raise NabFormatError(path, problem, line=line, field="row", value=",".join(row))
            stamp, text = row[ts_at], row[value_at]
            try:
                instant = datetime.strptime(stamp, TIME_FORMAT)
                if f"{instant.year:04d}{instant.strftime(TIME_FORMAT[2:])}" != stamp:
                    raise ValueError(stamp)
            except ValueError as error:
                problem = "is not a time 'YYYY-MM-DD HH:MM:SS'"
                raise NabFormatError(
                    path, problem, line=line, field="timestamp", value=stamp
                ) from error
            try:
                number = float(text)
            except ValueError as error:
                raise NabFormatError(
                    path, "is not a number", line=line, field="value", value=text
                ) from error
            if not math.isfinite(number):
                raise NabFormatError(path, "is not finite", line=line, field="value", value=text)


def _parse_window(path: Path, key: str, entry: object) -> Window:
    if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(t, str) for t in entry)):
        raise NabFormatError(path, "is not a [start, end] pair of times", field=key, value=entry)
    try:
        start, end = (datetime.strptime(t, WINDOW_TIME_FORMAT).replace(tzinfo=UTC) for t in entry)
    except ValueError as error:
        problem = "has a time that is not 'YYYY-MM-DD HH:MM:SS.ffffff'"
        raise NabFormatError(path, problem, field=key, value=entry) from error
    if end < start:
        raise NabFormatError(path, "ends before it starts", field=key, value=entry)
    return start, end


def _format_window_time(instant: datetime) -> str:
    if instant.tzinfo is not None:
        instant = instant.astimezone(UTC)
    return instant.strftime(WINDOW_TIME_FORMAT)


def _format_times(ticks: npt.NDArray[np.int64]) -> pa.StringArray:
    """``YYYY-MM-DD HH:MM:SS`` of each UTC millisecond tick, whole seconds, years 1 to 9999.

    Arrow's ``strftime`` goes through a time-zone library per value and dominates the cost of
    writing a file; this is the same text built from integer arithmetic on whole columns
    (the civil-from-days algorithm of Howard Hinnant's ``chrono`` date library).
    """
    seconds = ticks // 1000
    days, second_of_day = np.divmod(seconds, 86_400)
    shifted = days + 719_468  # days since 0000-03-01: leap days fall at the end of a year
    era = shifted // 146_097
    day_of_era = shifted - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    march_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * march_month + 2) // 5 + 1
    month = np.where(march_month < 10, march_month + 3, march_month - 9)
    year = year_of_era + era * 400 + (month <= 2)
    hour, minute_second = np.divmod(second_of_day, 3600)
    minute, second = np.divmod(minute_second, 60)
    text = np.empty((ticks.size, 19), dtype=np.uint8)
    text[:] = np.frombuffer(b"0000-00-00 00:00:00", dtype=np.uint8)
    for number, first, width in (
        (year, 0, 4),
        (month, 5, 2),
        (day, 8, 2),
        (hour, 11, 2),
        (minute, 14, 2),
        (second, 17, 2),
    ):
        for place in range(width):
            text[:, first + width - 1 - place] += (number // 10**place % 10).astype(np.uint8)
    offsets = np.arange(0, 19 * (ticks.size + 1), 19, dtype=np.int32)
    strings: pa.StringArray = pa.StringArray.from_buffers(
        ticks.size, pa.py_buffer(offsets), pa.py_buffer(text.tobytes())
    )
    return strings


def _first_bad_row(bad: np.ndarray) -> int:
    return int(np.argmax(bad))
