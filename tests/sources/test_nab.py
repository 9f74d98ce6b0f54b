"""The NAB corpus format: the real corpus reads, our writes read back, bad files are explained."""

import json
import math
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfml.errors import PerfmlError
from perfml.featurestore.schema import LONG_SCHEMA, TIMESTAMP_TYPE
from perfml.sources.errors import MetricNameError, NabFormatError, SourceError
from perfml.sources.nab import (
    SERIES_SCHEMA,
    NabSeries,
    iter_corpus,
    read_series,
    read_windows,
    write_series,
    write_windows,
)
from perfml.sources.nab import corpus_to_long as to_long

NAB = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "nab"
CATEGORY = "realAWSCloudwatch"


def series_table(ticks_ms: list[int], values: list[float]) -> pa.Table:
    return pa.table({"ts": pa.array(ticks_ms, TIMESTAMP_TYPE), "value": pa.array(values)})


@pytest.fixture(scope="module")
def corpus() -> list[NabSeries]:
    return list(iter_corpus(NAB))


def test_every_series_of_the_real_corpus_reads(corpus: list[NabSeries]) -> None:
    assert len(corpus) == 17
    assert [s.key for s in corpus] == sorted(s.key for s in corpus)
    tables = [s.read() for s in corpus]
    assert sum(t.num_rows for t in tables) == 67_740
    for one, table in zip(corpus, tables, strict=True):
        assert table.schema == SERIES_SCHEMA
        lines = one.path.read_text().splitlines()
        assert table.num_rows == len(lines) - 1
        last_stamp, last_value = lines[-1].split(",")
        assert table.column("value")[-1].as_py() == float(last_value)
        expected = datetime.strptime(last_stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        assert table.column("ts")[-1].as_py() == expected
        assert np.isfinite(table.column("value").to_numpy()).all()
    first = tables[0].slice(0, 1).to_pylist()[0]
    assert corpus[0].name == "ec2_cpu_utilization_24ae8d"
    assert first == {"ts": datetime(2014, 2, 14, 14, 30, tzinfo=UTC), "value": 0.132}


def test_the_real_windows_are_read_as_utc_instants_that_are_rows(corpus: list[NabSeries]) -> None:
    raw = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    windows = read_windows(NAB)
    assert windows.keys() == raw.keys()
    assert sum(len(entries) for entries in windows.values()) == 30
    assert windows[f"{CATEGORY}/ec2_cpu_utilization_24ae8d.csv"][0] == (
        datetime(2014, 2, 26, 13, 45, tzinfo=UTC),
        datetime(2014, 2, 27, 6, 25, tzinfo=UTC),
    )
    for one in corpus:
        assert list(one.windows) == windows[one.key]
        instants = set(one.read().column("ts").to_pylist())
        for start, end in one.windows:
            assert start.tzinfo is UTC
            assert start < end
            assert start in instants
            assert end in instants


def test_the_corpus_becomes_long_rows_keyed_by_category_and_stem(corpus: list[NabSeries]) -> None:
    table = to_long(corpus)
    assert table.schema == LONG_SCHEMA
    assert table.num_rows == 67_740
    assert set(table.column("metric").to_pylist()) == {CATEGORY}
    assert set(table.column("entity").to_pylist()) == {s.name for s in corpus}
    assert set(to_long(corpus[:2], metric="cpu").column("metric").to_pylist()) == {"cpu"}


def test_repeated_timestamps_of_the_real_corpus_can_be_dropped(corpus: list[NabSeries]) -> None:
    # Two files stamp the hour lost to daylight saving twelve times at 2014-03-09 03:00:00.
    kept = to_long(corpus)
    deduplicated = to_long(corpus, drop_repeated_ts=True)
    assert kept.num_rows - deduplicated.num_rows == 22
    keys = zip(
        deduplicated.column("entity").to_pylist(),
        deduplicated.column("ts").to_pylist(),
        strict=True,
    )
    assert len(set(keys)) == deduplicated.num_rows


def test_a_category_that_is_no_metric_name_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "data" / "real-AWS" / "a.csv", series_table([0], [1.0]))
    write_windows(tmp_path, {})
    with pytest.raises(MetricNameError, match="real-AWS"):
        to_long(iter_corpus(tmp_path))
    assert to_long(iter_corpus(tmp_path), metric="aws").num_rows == 1


def test_a_real_file_survives_a_round_trip_byte_for_value(
    corpus: list[NabSeries], tmp_path: Path
) -> None:
    for one in corpus:
        table = one.read()
        write_series(tmp_path / one.key, table)
        assert read_series(tmp_path / one.key).equals(table)


def test_write_series_writes_nab_text_exactly(tmp_path: Path) -> None:
    path = tmp_path / "out" / "x.csv"
    table = series_table([1_392_388_200_000, 1_392_388_500_000], [51.846000000000004, 0.0])
    write_series(path, table)
    assert path.read_text() == (
        "timestamp,value\n2014-02-14 14:30:00,51.846000000000004\n2014-02-14 14:35:00,0\n"
    )
    assert [p.name for p in path.parent.iterdir()] == ["x.csv"]  # no temporary file left


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(-2_000_000_000, 4_000_000_000),
    gaps=st.lists(st.integers(0, 10**7), max_size=40),
    values=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=41, max_size=41),
)
def test_any_finite_series_round_trips_exactly(
    start: int, gaps: list[int], values: list[float]
) -> None:
    ticks = np.cumsum([start, *gaps]) * 1000
    table = series_table(ticks.tolist(), values[: ticks.size])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "s.csv"
        write_series(path, table)
        assert read_series(path).equals(table.cast(SERIES_SCHEMA))


def test_write_series_refuses_what_nab_cannot_hold_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    write_series(path, series_table([0], [1.0]))
    before = path.read_bytes()
    for table, problem in [
        (series_table([0, 1000], [1.0, math.nan]), "row 1 is not finite"),
        (series_table([0, 1500], [1.0, 2.0]), "row 1 is not whole seconds"),
        (series_table([1000, 0], [1.0, 2.0]), "row 1 goes backwards"),
    ]:
        with pytest.raises(NabFormatError, match=problem):
            write_series(path, table)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.csv"]


def test_windows_round_trip_in_nab_formatting(tmp_path: Path) -> None:
    windows = {
        "b/y.csv": [(datetime(2024, 1, 1, 0, 5, tzinfo=UTC), datetime(2024, 1, 1, 1, tzinfo=UTC))],
        "a/x.csv": [],
    }
    write_windows(tmp_path, windows)
    text = (tmp_path / "labels" / "combined_windows.json").read_text()
    assert text == (
        '{\n    "a/x.csv": [],\n    "b/y.csv": [\n        [\n'
        '            "2024-01-01 00:05:00.000000",\n            "2024-01-01 01:00:00.000000"\n'
        "        ]\n    ]\n}"
    )
    assert read_windows(tmp_path) == windows


def test_the_real_windows_round_trip(tmp_path: Path) -> None:
    write_windows(tmp_path, read_windows(NAB))
    original = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    assert json.loads((tmp_path / "labels" / "combined_windows.json").read_text()) == original


BAD_SERIES = [
    pytest.param(
        "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00,2,3\n",
        3,
        "row '2014-01-01 00:05:00,2,3' has 3 fields",
        id="malformed-row",
    ),
    pytest.param(
        "timestamp,value\n2014-01-01 00:00:00,1\n\n2014-01-01 00:10:00,abc\n",
        4,
        "value 'abc' is not a number",
        id="non-numeric",
    ),
    pytest.param(
        "timestamp,value\n2014-01-01 00:00:00,1\n2014-02-30 00:05:00,2\n",
        3,
        "timestamp '2014-02-30 00:05:00' is not a time",
        id="bad-timestamp",
    ),
    pytest.param(
        "timestamp,value\n2014-01-01T00:00:00,1\n",
        2,
        "timestamp '2014-01-01T00:00:00' is not a time",
        id="iso-t-timestamp",
    ),
    pytest.param("timestamp,val\n2014-01-01 00:00:00,1\n", 1, "no column 'value'", id="missing"),
    pytest.param(
        "timestamp,value,label\n2014-01-01 00:00:00,1,0\n",
        1,
        "unexpected column 'label'",
        id="extra-column",
    ),
    pytest.param(
        "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00,NaN\n",
        3,
        "value 'NaN' is not finite",
        id="nan",
    ),
    pytest.param(
        "timestamp,value\n2014-01-01 00:00:00,-inf\n", 2, "value '-inf' is not finite", id="inf"
    ),
    pytest.param(
        "timestamp,value\n2014-01-01 00:00:00,\n", 2, "value '' is not a number", id="empty-value"
    ),
    pytest.param("", 1, "is empty", id="empty-file"),
    pytest.param(
        "timestamp,value\n2014-1-1 0:00:00,1\n",
        2,
        "timestamp '2014-1-1 0:00:00' is not a time",
        id="unpadded-timestamp",
    ),
]


@pytest.mark.parametrize(("text", "line", "problem"), BAD_SERIES)
def test_bad_series_errors_name_file_line_and_value(
    tmp_path: Path, text: str, line: int, problem: str
) -> None:
    path = tmp_path / "ec2.csv"
    path.write_text(text)
    with pytest.raises(NabFormatError) as caught:
        read_series(path)
    message = str(caught.value)
    assert message.startswith(f"{path} line {line}: ")
    assert problem in message
    assert caught.value.line == line
    assert caught.value.path == path
    assert isinstance(caught.value, SourceError)
    assert isinstance(caught.value, PerfmlError)


def test_an_error_deep_in_a_real_file_names_its_line(
    corpus: list[NabSeries], tmp_path: Path
) -> None:
    lines = corpus[0].path.read_text().splitlines()
    lines[3000] = lines[3000].split(",")[0] + ",12.5.1"
    path = tmp_path / "broken.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(NabFormatError, match=r"broken.csv line 3001: value '12.5.1' is not a numb"):
        read_series(path)


def test_bad_windows_files_are_explained(tmp_path: Path) -> None:
    with pytest.raises(NabFormatError, match=r"combined_windows\.json: does not exist"):
        read_windows(tmp_path)
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "combined_windows.json").write_text('{\n  "a/x.csv": [\n    ["2014-01-01",]\n')
    with pytest.raises(NabFormatError, match="line 3: is not JSON"):
        read_windows(tmp_path)
    (labels / "combined_windows.json").write_text('{"a/x.csv": [["2014-01-01", "x"]]}')
    with pytest.raises(NabFormatError, match=r"a/x.csv \['2014-01-01', 'x'\] has a time"):
        read_windows(tmp_path)
    (labels / "combined_windows.json").write_text(
        '{"a/x.csv": [["2014-01-02 00:00:00.000000", "2014-01-01 00:00:00.000000"]]}'
    )
    with pytest.raises(NabFormatError, match="ends before it starts"):
        read_windows(tmp_path)


def test_a_corpus_needs_category_folders(tmp_path: Path) -> None:
    with pytest.raises(NabFormatError, match="is not a folder"):
        list(iter_corpus(tmp_path))
    write_series(tmp_path / "data" / "loose.csv", series_table([0], [1.0]))
    write_windows(tmp_path, {})
    with pytest.raises(NabFormatError, match="not in a category folder"):
        list(iter_corpus(tmp_path))


def test_series_missing_from_the_labels_have_no_windows(tmp_path: Path) -> None:
    write_series(tmp_path / "data" / "c" / "a.csv", series_table([0, 300_000], [1.0, 2.0]))
    window = (datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC) + timedelta(1))
    write_windows(tmp_path, {"c/elsewhere.csv": [window]})
    [series] = iter_corpus(tmp_path)
    assert (series.key, series.category, series.name, series.windows) == ("c/a.csv", "c", "a", ())
