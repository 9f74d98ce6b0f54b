"""The runner: published NAB results reproduce, detectors run by NAB's protocol, fleets too."""

from __future__ import annotations

import csv
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fixtures.detectors import RollingZScore
from perfml.detectors import create
from perfml.detectors.errors import BadParamsError, UnknownDetectorError
from perfml.evaluation.nab import PROFILES, probation_rows, score_file, window_rows
from perfml.evaluation.runner import (
    FIT_FRACTION,
    CorpusNotFoundError,
    FleetLayoutError,
    MissingResultsError,
    NoWindowsError,
    ScoredSeries,
    SeriesFailedError,
    evaluate,
    evaluate_fleet,
    fleet_tasks,
    nab_tasks,
    read_results,
    score_tasks,
)
from perfml.sources.fleet import METRICS, generate_fleet, write_fleet
from perfml.sources.nab import read_series, read_windows
from perfml.timeparse import to_epoch_ms

NAB = Path(__file__).resolve().parents[3] / "shared" / "data" / "nab"
NUMENTA = NAB / "results" / "numenta"
TOY = RollingZScore.name


def reference(detector: str = "numenta") -> dict[str, dict[str, dict[str, str]]]:
    """profile → file → the published row."""
    found: dict[str, dict[str, dict[str, str]]] = {}
    with open(NAB / "results" / "reference_scores.csv") as handle:
        for row in csv.DictReader(handle):
            if row["Detector"] == detector:
                found.setdefault(row["Profile"], {})[row["File"]] = row
    return found


@pytest.fixture(scope="module")
def numenta() -> dict[str, ScoredSeries]:
    name, scored = read_results(NAB, NUMENTA)
    assert name == "numenta"
    return scored


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fleet")
    write_fleet(generate_fleet(hosts=2, months=1, seed=1), folder)
    return folder


def test_published_numenta_results_score_73_4_with_the_sweep_and_at_its_threshold(numenta):
    thresholds = json.loads((NAB / "results" / "thresholds.json").read_text())["numenta"]
    swept = evaluate(numenta, "numenta")
    given = evaluate(numenta, "numenta", thresholds["standard"]["threshold"])
    assert round(swept.score("standard"), 1) == 73.4
    assert round(given.score("standard"), 1) == 73.4
    assert swept.score("standard") >= given.score("standard") - 1e-9


@pytest.mark.parametrize("profile_name", list(PROFILES))
def test_every_profile_at_its_published_threshold_reproduces_every_file(numenta, profile_name):
    published = reference()[profile_name]
    threshold = float(next(iter(published.values()))["Threshold"])
    result = evaluate(numenta, "numenta", threshold).profiles[profile_name]
    assert set(result.corpus.files) == set(published)
    for key, row in published.items():
        got = result.corpus.files[key]
        assert got.score == pytest.approx(float(row["Score"]), abs=1e-6), key
        expected = tuple(int(row[c]) for c in ("TP", "FP", "FN", "TN"))
        assert (got.tp, got.fp, got.fn, got.tn) == expected, key
        # the metrics judge the same rows: their point counts are NAB's counts
        point = result.files[key].point
        assert (point.tp, point.fp, point.fn, point.tn) == expected, key
    raw = sum(float(row["Score"]) for row in published.values())
    assert result.corpus.raw == pytest.approx(raw, abs=1e-6)


def test_metrics_are_taken_at_each_profiles_own_threshold(numenta):
    result = evaluate(numenta, "numenta")
    for name, profile_result in result.profiles.items():
        corpus = profile_result.corpus
        assert corpus.profile == name
        quiet = corpus.threshold > max(float(s.scores.max()) for s in numenta.values())
        assert (profile_result.metrics.event.runs == 0) == quiet
    standard = result.profiles["standard"].metrics
    assert standard.event.windows == 30
    assert standard.event.detected == 25
    # 5-minute rows, but for the hour of NAB's files squashed onto one instant by the DST change
    assert standard.mean_delay_seconds == pytest.approx(standard.mean_delay_rows * 300, rel=0.01)


def test_the_results_layout_is_found_from_the_detector_the_category_or_nab_results(numenta):
    by_category = read_results(NAB, NUMENTA / "realAWSCloudwatch")
    from_root = read_results(NAB, NAB / "results", detector="numenta")
    for name, scored in (by_category, from_root):
        assert name == "numenta"
        assert scored.keys() == numenta.keys()
        for key, one in scored.items():
            np.testing.assert_array_equal(one.scores, numenta[key].scores)
            assert one.windows == numenta[key].windows
    with pytest.raises(MissingResultsError, match=r"several detectors \(null, numenta\)"):
        read_results(NAB, NAB / "results")  # a detector must be named
    with pytest.raises(MissingResultsError, match="has no realAWSCloudwatch/<detector>_ec2"):
        read_results(NAB, NAB / "data")
    with pytest.raises(MissingResultsError, match="numentaTM_ec2_cpu"):
        read_results(NAB, NUMENTA, detector="numentaTM")


def test_several_detectors_in_one_folder_must_be_told_apart(tmp_path):
    folder = tmp_path / "realAWSCloudwatch"
    shutil.copytree(NUMENTA / "realAWSCloudwatch", folder)
    for path in (NAB / "results" / "null" / "realAWSCloudwatch").glob("*.csv"):
        shutil.copy(path, folder / path.name)
    with pytest.raises(MissingResultsError, match=r"several detectors \(null, numenta\)"):
        read_results(NAB, tmp_path)
    name, scored = read_results(NAB, tmp_path, detector="null")
    assert name == "null"
    assert evaluate(scored, name).score("standard") == pytest.approx(0.0)


def test_a_detector_runs_from_scratch_on_each_series_by_nabs_protocol():
    tasks = nab_tasks(NAB)
    assert len(tasks) == 17
    scored = score_tasks(tasks[:3], TOY, {"window": 24}, workers=1)
    assert list(scored) == [t.key for t in tasks[:3]]
    windows = read_windows(NAB)
    for task in tasks[:3]:
        table = read_series(task.paths[0])
        direct = create(TOY, window=24).score(table)
        np.testing.assert_array_equal(scored[task.key].scores, direct)
        ts = table.column("ts").cast("int64").to_numpy()
        spans = [(to_epoch_ms(a), to_epoch_ms(b)) for a, b in windows[task.key]]
        assert list(scored[task.key].windows) == window_rows(ts, spans)


def test_the_whole_corpus_scores_between_null_and_perfect_and_repeatably():
    first = evaluate(score_tasks(nab_tasks(NAB), TOY), TOY)
    again = evaluate(score_tasks(nab_tasks(NAB), TOY), TOY)
    assert first.series == 17
    for name in PROFILES:
        assert 0.0 <= first.score(name) <= 100.0
        assert first.score(name) == again.score(name)
        assert first.profiles[name].corpus.threshold == again.profiles[name].corpus.threshold


def test_a_detector_that_must_be_fitted_is_fitted_on_the_probation_only():
    task = nab_tasks(NAB)[0]
    scored = score_tasks([task], "toy_static_zscore", workers=1)[task.key]
    table = read_series(task.paths[0])
    probation = probation_rows(table.num_rows)
    assert len(scored.scores) == table.num_rows
    assert not scored.scores[:probation].any()
    values = table.column("value").to_numpy()
    mean, std = values[:probation].mean(), values[:probation].std()
    expected = np.minimum(1.0, np.abs(values[probation:] - mean) / std / 6.0)
    np.testing.assert_allclose(scored.scores[probation:], expected, rtol=1e-12)


def test_a_pool_of_processes_gives_the_same_results_as_one(fleet_dir):
    tasks = fleet_tasks(fleet_dir, multivariate=False)[:4]
    done: list[str] = []
    pooled = score_tasks(tasks, TOY, workers=2, on_series=done.append)
    serial = score_tasks(tasks, TOY, workers=1)
    assert sorted(done) == sorted(t.key for t in tasks)
    assert list(pooled) == list(serial) == [t.key for t in tasks]
    for key in serial:
        np.testing.assert_array_equal(pooled[key].scores, serial[key].scores)
        assert pooled[key].windows == serial[key].windows


def test_a_univariate_detector_scores_each_series_of_a_fleet(fleet_dir):
    result = evaluate_fleet(fleet_dir, TOY, workers=1)
    keys = set(result.profiles["standard"].corpus.files)
    assert keys == {f"{m}/host-{h:04d}.csv" for m in METRICS for h in range(2)}
    labelled = json.loads((fleet_dir / "labels" / "combined_windows.json").read_text())
    assert result.profiles["standard"].metrics.event.windows == sum(map(len, labelled.values()))


def test_a_multivariate_detector_scores_each_host_after_fitting_on_15_percent(fleet_dir):
    tasks = fleet_tasks(fleet_dir, multivariate=True)
    assert [t.key for t in tasks] == ["host-0000", "host-0001"]
    assert tasks[0].columns == tuple(METRICS)
    scored = score_tasks(tasks, "toy_running_zscore", workers=1)
    labelled = read_windows(fleet_dir)
    for host, one in scored.items():
        tables = [read_series(fleet_dir / "data" / m / f"{host}.csv") for m in METRICS]
        rows = tables[0].num_rows
        fit = int(FIT_FRACTION * rows)
        assert len(one.scores) == rows - fit
        ts = tables[0].column("ts").cast("int64").to_numpy()
        np.testing.assert_array_equal(one.timestamps_ms, ts[fit:])
        # the union of the host's windows over its metrics, in the scored rows
        spans = {
            (to_epoch_ms(a), to_epoch_ms(b))
            for m in METRICS
            for a, b in labelled[f"{m}/{host}.csv"]
        }
        rows_of = sorted(window_rows(ts[fit:], sorted(spans)))
        assert list(one.windows) == rows_of
        # the same detector fitted by hand on the aligned frame
        frame = {"ts": tables[0].column("ts")} | {
            m: t.column("value") for m, t in zip(METRICS, tables, strict=True)
        }
        wide = pa.table(frame)
        model = create("toy_running_zscore").fit(wide.slice(0, fit))
        np.testing.assert_array_equal(one.scores, model.score(wide.slice(fit)))


def test_a_fleet_host_missing_a_metric_is_refused(fleet_dir, tmp_path):
    broken = tmp_path / "fleet"
    shutil.copytree(fleet_dir, broken)
    (broken / "data" / "mem_util" / "host-0001.csv").unlink()
    with pytest.raises(FleetLayoutError, match="host 'host-0001' has no data/mem_util"):
        fleet_tasks(broken, multivariate=True)


def test_a_failure_names_the_series_and_survives_the_trip_between_processes(fleet_dir, tmp_path):
    broken = tmp_path / "fleet"
    shutil.copytree(fleet_dir, broken)
    bad = broken / "data" / "cpu_util" / "host-0001.csv"
    bad.write_text(bad.read_text().replace("\n2024-01-02 00:00:00,", "\n2024-01-02 00:00:00,x"))
    tasks = nab_tasks(broken)[:2]  # cpu_util of both hosts
    with pytest.raises(SeriesFailedError, match="cpu_util/host-0001.csv: .*host-0001.csv line"):
        score_tasks(tasks, TOY, workers=1)
    with pytest.raises(SeriesFailedError, match="cpu_util/host-0001.csv: .*host-0001.csv line"):
        score_tasks(tasks, TOY, workers=2)
    error = SeriesFailedError("a/b.csv", TOY, "went wrong", exit_code=3)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.key, copy.exit_code) == (str(error), "a/b.csv", 3)


def test_wrong_detectors_and_corpora_are_refused_before_any_work(tmp_path):
    with pytest.raises(UnknownDetectorError, match="'no_such_detector'"):
        score_tasks(nab_tasks(NAB), "no_such_detector")
    with pytest.raises(BadParamsError, match="window"):
        score_tasks(nab_tasks(NAB), TOY, {"window": 1})
    with pytest.raises(BadParamsError, match="unknown parameter alpha"):
        score_tasks(nab_tasks(NAB), TOY, {"alpha": 1})
    with pytest.raises(CorpusNotFoundError, match="is not a folder"):
        nab_tasks(tmp_path / "missing")
    (tmp_path / "data").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "combined_windows.json").write_text("{}")
    with pytest.raises(CorpusNotFoundError, match="holds no series"):
        nab_tasks(tmp_path)


def test_a_corpus_without_windows_has_no_nab_score(numenta):
    bare = {k: ScoredSeries(k, s.scores, (), s.timestamps_ms) for k, s in numenta.items()}
    with pytest.raises(NoWindowsError, match="none of the 17 series"):
        evaluate(bare, "numenta")


def test_the_nab_scorer_and_the_runner_agree_file_by_file(numenta):
    result = evaluate(numenta, "numenta").profiles["standard"]
    for key, one in numenta.items():
        direct = score_file(one.scores, one.windows, PROFILES["standard"], result.corpus.threshold)
        assert result.corpus.files[key] == direct
