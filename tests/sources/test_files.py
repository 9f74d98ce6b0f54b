"""Long-format CSV and Parquet files: parsing, and errors that name file, line and value."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fixtures.points import make_points, rows
from perfml.featurestore import FeatureStore
from perfml.sources.files import FileFormatError, read_points
from perfml.sources.ingestion import ingest_files

GOOD = """metric,entity,ts,value
cpu_util,web-1,2024-01-01 00:00:00,12.5
cpu_util,web-1,2024-01-01T00:05:00Z,13
cpu_util,web-1,2024-01-01T01:10:00+01:00,14.25
"""


def write(tmp_path: Path, text: str, name: str = "points.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def read_all(path: Path, drop: bool = False) -> pa.Table:
    return pa.concat_tables(t for t, _ in read_points(path, drop))


def test_csv_with_mixed_iso_spellings_is_read_as_utc(tmp_path):
    table = read_all(write(tmp_path, GOOD))
    assert table.column("ts").to_pylist() == [
        datetime(2024, 1, 1, 0, m, tzinfo=UTC) for m in (0, 5, 10)
    ]
    assert table.column("value").to_pylist() == [12.5, 13.0, 14.25]


def test_unix_seconds_and_column_aliases(tmp_path):
    path = write(tmp_path, "metric,entity,timestamp,value\nm,e,1704067200,1\nm,e,1704067500.5,2\n")
    ts = read_all(path).column("ts").cast(pa.int64()).to_pylist()
    assert ts == [1_704_067_200_000, 1_704_067_500_500]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD + "cpu_util,web-1,2024-01-01 00:15:00,abc\n", "line 5: value 'abc' is not a number"),
        (GOOD + "cpu_util,web-1,yesterday,1\n", "line 5: ts 'yesterday' is not a time"),
        (GOOD + "cpu_util,web-1,2024-01-01 00:15:00\n", "line 5: malformed row"),
        (GOOD + "\ncpu_util,web-1,2024-01-01 00:20:00,nan\n", "line 6: value nan is not finite"),
        (GOOD + "cpu_util,,2024-01-01 00:15:00,1\n", "line 5: entity is empty"),
        ("metric,entity,value\ncpu,h,1\n", "line 1: missing column(s) 'ts'"),
        ("metric,entity,ts,value,extra\n", "line 1: unexpected column 'extra'"),
        ("", "is empty"),
    ],
)
def test_bad_csv_names_file_line_and_value(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(FileFormatError) as raised:
        read_all(path)
    assert str(raised.value).startswith(str(path))
    assert message in str(raised.value)
    assert "nothing was written" in str(raised.value)


def test_nonfinite_values_are_dropped_only_when_asked(tmp_path):
    path = write(tmp_path, GOOD + "cpu_util,web-1,2024-01-01 00:15:00,inf\n")
    with pytest.raises(FileFormatError, match="line 5: value inf is not finite"):
        read_all(path)
    store = FeatureStore(tmp_path / "store")
    report = ingest_files(store, [path], drop_nonfinite=True)
    assert (report.points_added, report.dropped_nonfinite) == (3, 1)


def test_parquet_round_trip_and_row_numbers_in_errors(tmp_path):
    points = make_points(["cpu_util"], ["a", "b"], n=20)
    good = tmp_path / "good.parquet"
    pq.write_table(points, good)
    assert rows(read_all(good)) == rows(points)
    broken = points.to_pylist()
    broken[7]["value"] = float("nan")
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(broken), bad)
    with pytest.raises(FileFormatError, match="bad.parquet row 8: value nan is not finite"):
        read_all(bad)


def test_a_bad_file_among_several_writes_nothing(tmp_path):
    store = FeatureStore(tmp_path / "store")
    good = write(tmp_path, GOOD, "good.csv")
    bad = write(tmp_path, GOOD + "cpu_util,web-2,2024-01-01 00:15:00,x\n", "bad.csv")
    with pytest.raises(FileFormatError, match="bad.csv line 5"):
        ingest_files(store, [good, bad])
    assert store.summary().points == 0
    assert ingest_files(store, [good]).points_added == 3


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(FileFormatError, match="unknown file type '.json'"):
        read_all(write(tmp_path, "{}", "x.json"))
    with pytest.raises(FileFormatError, match="no such file"):
        read_all(tmp_path / "absent.csv")
