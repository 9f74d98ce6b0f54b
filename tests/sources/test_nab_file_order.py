"""Real NAB files: timestamps that repeat or go back are read and scored in file order, the
store's rule for repeated points holds (the last row of a key kept, the others counted and
told), and a category folder that is a symlink is seen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from perfml.cli.app import main
from perfml.evaluation.runner import evaluate_nab, nab_tasks, run_task
from perfml.featurestore import FeatureStore
from perfml.sources.ingestion import ingest_corpus
from perfml.sources.nab import clock, iter_corpus, read_series, went_back

STEP = 300  # seconds


def stamp(seconds: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(1_388_534_400 + seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def write_corpus(root: Path, rows: list[tuple[int, float]], name: str = "restarted") -> Path:
    """A one-file corpus whose series is ``rows`` (seconds from 2014-01-01, value) in this
    order, with one labelled window around the spike at row 300."""
    data = root / "data" / "realRestarts"
    data.mkdir(parents=True)
    lines = ["timestamp,value", *(f"{stamp(t)},{v!r}" for t, v in rows)]
    (data / f"{name}.csv").write_text("\n".join(lines) + "\n")
    start, end = rows[290][0], rows[310][0]
    window = [f"{stamp(start)}.000000", f"{stamp(end)}.000000"]
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(
        json.dumps({f"realRestarts/{name}.csv": [window]})
    )
    return root


def restarted_rows() -> list[tuple[int, float]]:
    """600 points every 5 minutes with a spike at row 300; the clock is set back an hour at
    row 200 and a timestamp repeats at row 400."""
    rng = np.random.default_rng(5)
    rows = []
    for i in range(600):
        t = i * STEP - (3600 if 200 <= i < 260 else 0)
        value = 10.0 + float(rng.normal(0, 0.5)) + (30.0 if i == 300 else 0.0)
        rows.append((t, value))
    rows[400] = (rows[399][0], rows[400][1])
    return rows


def test_a_series_whose_time_goes_back_is_read_in_file_order(tmp_path: Path) -> None:
    rows = restarted_rows()
    corpus = write_corpus(tmp_path / "corpus", rows)
    (series,) = iter_corpus(corpus)
    table = read_series(series.path)
    assert table.column("value").to_pylist() == [v for _, v in rows]
    ticks = table.column("ts").cast(pa.int64()).to_numpy()
    assert went_back(ticks) == 1
    shown = clock(ticks)
    assert (np.diff(shown) >= 0).all()
    assert shown[200] == shown[199]  # the row after the clock went back is shown at the latest


def test_every_row_is_scored_in_file_order_and_the_spike_is_found(tmp_path: Path) -> None:
    rows = restarted_rows()
    corpus = write_corpus(tmp_path / "corpus", rows)
    (task,) = nab_tasks(corpus)
    scored = run_task(task, "streaming", {})
    assert len(scored.scores) == len(rows)
    assert int(np.argmax(scored.scores[250:350])) + 250 == 300
    result = evaluate_nab(corpus, "streaming")
    assert result.series == 1
    assert result.profiles["standard"].corpus.score > 0


def test_the_cli_evaluates_such_a_corpus(tmp_path: Path, capsys) -> None:
    corpus = write_corpus(tmp_path / "corpus", restarted_rows())
    assert main(["evaluate", "nab", "--corpus", str(corpus), "--detector", "streaming"]) == 0
    assert "streaming" in capsys.readouterr().out


def test_the_store_keeps_the_last_row_of_a_repeated_point_and_counts_the_others(
    tmp_path: Path, capsys
) -> None:
    rows = restarted_rows()
    corpus = write_corpus(tmp_path / "corpus", rows)
    store = FeatureStore(tmp_path / "store")
    report = ingest_corpus(store, corpus)
    repeated_at = rows[400][0]
    # the hour set back overlaps 12 earlier points, and row 400 repeats row 399's time
    times = [t for t, _ in rows]
    assert report.points_replaced_or_repeated == len(times) - len(set(times))
    points = store.read("realRestarts", "restarted")
    assert points.num_rows == len(set(times))
    at = points.column("ts").cast(pa.int64()).to_numpy() == repeated_at * 1000 + 1_388_534_400_000
    (kept,) = points.column("value").to_numpy()[at]
    assert kept == rows[400][1]  # the later row in the file
    code = main(["--workspace", str(tmp_path / "ws"), "ingest", "nab", str(corpus)])
    assert code == 0
    assert "updated or repeated" in capsys.readouterr().out


def test_a_category_folder_that_is_a_symlink_is_seen(tmp_path: Path) -> None:
    real = write_corpus(tmp_path / "real", restarted_rows())
    linked = tmp_path / "linked"
    (linked / "data").mkdir(parents=True)
    (linked / "data" / "realRestarts").symlink_to(real / "data" / "realRestarts")
    (linked / "data" / "loop").symlink_to(linked / "data")  # a link back up is walked once
    (linked / "labels").symlink_to(real / "labels")
    assert [s.key for s in iter_corpus(linked)] == ["realRestarts/restarted.csv"]
