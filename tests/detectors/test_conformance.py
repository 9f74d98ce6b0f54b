"""Every detector perfml ships keeps the detector contract, checked the same way for each.

The suite runs over every registered built-in detector on two weeks of a generated host:
univariate detectors get one metric, multivariate ones the host's six. Each is fitted on the
first ten days and scores the last four. It checks the range, causality, that scoring a frame
equals updating row by row and changes nothing, determinism, an exact save/load round trip,
tolerance of missing values and refusal of unknown parameters; then that a damaged, foreign
or booby-trapped saved file is refused with a clear message and never unpickled.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from perfml.detectors import Detector, available, create, load
from perfml.detectors.errors import ArtifactError, BadParamsError
from perfml.sources.fleet import generate_fleet

DAYS = 14
FIT_DAYS = 10
STEPS_PER_DAY = 288
UNIVARIATE_METRIC = "request_latency_ms"


def builtin_detectors() -> list[str]:
    """Every registered detector that perfml itself provides.

    Tests may register toy detectors of their own (``tests/fixtures/detectors.py``); whether
    they are registered depends on which test modules were collected, so they are left out.
    """
    return [name for name in available() if type(create(name)).__module__.startswith("perfml.")]


DETECTORS = builtin_detectors()


class Host:
    """One generated host's two weeks: timestamps and every metric."""

    def __init__(self) -> None:
        fleet = generate_fleet(hosts=1, months=1, seed=20240101)
        steps = DAYS * STEPS_PER_DAY
        self.ts = fleet.timestamps()[:steps]
        self.metrics = {
            name: series[:steps] for name, series in fleet.host_values("host-0000").items()
        }

    def frame(self, detector: Detector, rows: slice, **changed: np.ndarray) -> pa.Table:
        """The rows as the detector reads them: ``ts, value`` or ``ts`` and every metric."""
        metrics = {**self.metrics, **changed}
        if not detector.multivariate:
            metrics = {"value": metrics[UNIVARIATE_METRIC]}
        columns = {"ts": pa.array(self.ts[rows], pa.timestamp("ms", tz="UTC"))}
        columns |= {name: pa.array(series[rows]) for name, series in metrics.items()}
        return pa.table(columns)


HISTORY = slice(0, FIT_DAYS * STEPS_PER_DAY)
LATER = slice(FIT_DAYS * STEPS_PER_DAY, DAYS * STEPS_PER_DAY)


@pytest.fixture(scope="module")
def host() -> Host:
    return Host()


@pytest.fixture(scope="module", params=DETECTORS)
def fitted(request: pytest.FixtureRequest, host: Host) -> Detector:
    """A detector fitted on the history; tests that change a detector change a copy."""
    detector = create(request.param)
    return detector.fit(host.frame(detector, HISTORY))


@pytest.fixture(scope="module")
def later_scores(fitted: Detector, host: Host) -> np.ndarray:
    return fitted.score(host.frame(fitted, LATER))


def arrays_of(frame: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    ts = frame.column("ts").cast(pa.int64()).to_numpy()
    values = np.column_stack([frame.column(c).to_numpy() for c in frame.column_names[1:]])
    return ts, values[:, 0] if values.shape[1] == 1 else values


def saved_bytes(detector: Detector, path: Path) -> bytes:
    detector.save(path)
    return path.read_bytes()


def with_missing(host: Host, rows: slice, seed: int) -> dict[str, np.ndarray]:
    """Every metric with about 2% of its values and an hour of all of them missing."""
    rng = np.random.default_rng(seed)
    changed = {}
    for name, series in host.metrics.items():
        series = series.copy()
        window = series[rows]
        window[rng.random(window.size) < 0.02] = np.nan
        window[100:112] = np.nan
        changed[name] = series
    return changed


# -- the scoring contract ---------------------------------------------------------------------


def test_the_builtin_detectors_are_all_checked() -> None:
    assert {"seasonal", "iforest"} <= set(DETECTORS)


def test_one_finite_score_in_the_unit_interval_per_row(
    fitted: Detector, host: Host, later_scores: np.ndarray
) -> None:
    assert later_scores.shape == (LATER.stop - LATER.start,)
    assert later_scores.dtype == np.float64
    assert np.all(np.isfinite(later_scores))
    assert np.all((later_scores >= 0.0) & (later_scores <= 1.0))


@pytest.mark.parametrize("k", [1, 200, 1000])
def test_scores_are_causal(fitted: Detector, host: Host, later_scores: np.ndarray, k: int) -> None:
    altered = {}
    for name, series in host.metrics.items():
        series = series.copy()
        future = np.arange(series.size) >= LATER.start + k
        series[future] = series[future] * 3.0 + 17.0
        series[LATER.start + k + 5] = np.nan
        altered[name] = series
    scores = fitted.score(host.frame(fitted, LATER, **altered))
    np.testing.assert_array_equal(scores[:k], later_scores[:k])
    assert not np.array_equal(scores[k:], later_scores[k:])


def test_scoring_a_frame_equals_updating_row_by_row_and_changes_nothing(
    fitted: Detector, host: Host, later_scores: np.ndarray, tmp_path: Path
) -> None:
    before = saved_bytes(fitted, tmp_path / "before.zip")
    frame = host.frame(fitted, LATER)
    again = fitted.score(frame)
    np.testing.assert_array_equal(again, later_scores)
    assert saved_bytes(fitted, tmp_path / "after.zip") == before

    streamed = fitted.copy()
    ts, values = arrays_of(frame)
    by_row = [streamed.update(t, v) for t, v in zip(ts.tolist(), values, strict=True)]
    assert all(isinstance(score, float) for score in by_row)
    np.testing.assert_allclose(by_row, later_scores, rtol=0, atol=1e-12)
    assert saved_bytes(fitted, tmp_path / "after-copy.zip") == before


def test_learning_a_frame_equals_updating_row_by_row(fitted: Detector, host: Host) -> None:
    first, second = slice(LATER.start, LATER.start + 500), slice(LATER.start + 500, LATER.stop)
    ts, values = arrays_of(host.frame(fitted, first))
    at_once, by_row = fitted.copy(), fitted.copy()
    at_once.learn(ts, values)
    for t, v in zip(ts.tolist(), values, strict=True):
        by_row.update(t, v)
    following = host.frame(fitted, second)
    np.testing.assert_allclose(
        at_once.score(following), by_row.score(following), rtol=0, atol=1e-12
    )


def test_scoring_no_rows_gives_no_scores(fitted: Detector, host: Host) -> None:
    assert fitted.score(host.frame(fitted, slice(0, 0))).shape == (0,)


def test_fitting_is_deterministic_and_starts_from_scratch(fitted: Detector, host: Host) -> None:
    history, later = host.frame(fitted, HISTORY), host.frame(fitted, LATER)
    first = create(fitted.name, **fitted.params.model_dump()).fit(history)
    second = create(fitted.name, **fitted.params.model_dump()).fit(host.frame(fitted, LATER))
    second.fit(history)
    np.testing.assert_array_equal(first.score(later), fitted.score(later))
    np.testing.assert_array_equal(second.score(later), fitted.score(later))


def test_missing_values_give_valid_scores(host: Host, fitted: Detector) -> None:
    history = host.frame(fitted, HISTORY, **with_missing(host, HISTORY, seed=1))
    detector = create(fitted.name).fit(history)
    gappy = host.frame(detector, LATER, **with_missing(host, LATER, seed=2))
    scores = detector.score(gappy)
    assert np.all(np.isfinite(scores))
    assert np.all((scores >= 0.0) & (scores <= 1.0))
    # A detector that lived through the gaps goes on scoring sensibly.
    ts, values = arrays_of(gappy.slice(0, 500))
    for t, v in zip(ts.tolist(), values, strict=True):
        detector.update(t, v)
    after = detector.score(host.frame(detector, slice(LATER.start + 500, LATER.stop)))
    assert np.all(np.isfinite(after))
    assert np.all((after >= 0.0) & (after <= 1.0))
    assert np.median(after) < 0.95


def test_unknown_parameters_are_refused() -> None:
    for name in DETECTORS:
        with pytest.raises(BadParamsError, match="unknown parameter no_such_knob"):
            create(name, no_such_knob=1)


# -- the saved form -----------------------------------------------------------------------------


def test_save_then_load_scores_bit_for_bit(
    fitted: Detector, host: Host, later_scores: np.ndarray, tmp_path: Path
) -> None:
    path = tmp_path / "model.zip"
    digest = fitted.save(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = load(path)
    assert type(loaded) is type(fitted)
    assert loaded.params == fitted.params
    assert loaded.columns == fitted.columns
    np.testing.assert_array_equal(loaded.score(host.frame(loaded, LATER)), later_scores)
    # The same model saves to the same bytes, however often and after a round trip.
    assert saved_bytes(fitted, tmp_path / "again.zip") == path.read_bytes()
    assert saved_bytes(loaded, tmp_path / "reloaded.zip") == path.read_bytes()
    # And both go on learning alike.
    ts, values = arrays_of(host.frame(fitted, LATER))
    original = fitted.copy()
    for t, v in zip(ts[:50].tolist(), values[:50], strict=True):
        assert loaded.update(t, v) == original.update(t, v)
    assert saved_bytes(loaded, tmp_path / "a.zip") == saved_bytes(original, tmp_path / "b.zip")


def test_an_unfitted_detector_saves_and_loads(tmp_path: Path) -> None:
    for name in DETECTORS:
        path = tmp_path / f"{name}.zip"
        create(name).save(path)
        assert load(path).name == name


@pytest.fixture
def saved(fitted: Detector, tmp_path: Path) -> Path:
    path = tmp_path / "model.zip"
    fitted.save(path)
    return path


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rewrite(path: Path, contents: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, blob in contents.items():
            archive.writestr(name, blob)


def edit_manifest(path: Path, **changes: Any) -> None:
    contents = members(path)
    manifest = json.loads(contents["detector.json"])
    manifest.update(changes)
    contents["detector.json"] = json.dumps(manifest).encode()
    rewrite(path, contents)


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.99])
def test_a_truncated_file_is_refused(saved: Path, keep: float) -> None:
    blob = saved.read_bytes()
    saved.write_bytes(blob[: int(len(blob) * keep)])
    with pytest.raises(ArtifactError, match="not a saved perfml detector|truncated"):
        load(saved)


def test_a_flipped_byte_in_an_array_is_refused(saved: Path) -> None:
    contents = members(saved)
    arrays = [n for n in sorted(contents) if n.startswith("arrays/")]
    if not arrays:
        pytest.skip("this detector saves no arrays")
    name = arrays[0]
    blob = bytearray(contents[name])
    blob[-1] ^= 0x01
    contents[name] = bytes(blob)
    rewrite(saved, contents)
    array = name.removeprefix("arrays/").removesuffix(".npy")
    with pytest.raises(ArtifactError, match=f"array '{array}' does not match its SHA-256"):
        load(saved)


def test_a_flipped_byte_in_the_file_is_refused(saved: Path) -> None:
    with zipfile.ZipFile(saved) as archive:
        info = max(archive.infolist(), key=lambda i: i.compress_size)
    blob = bytearray(saved.read_bytes())
    # The member's data follow its 30-byte local header, its name and its extra field.
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    blob[start + info.compress_size // 2] ^= 0xFF
    saved.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="unreadable|SHA-256|not a plain array|not JSON"):
        load(saved)


def test_a_zip_without_the_manifest_is_refused(saved: Path) -> None:
    contents = members(saved)
    del contents["detector.json"]
    rewrite(saved, contents)
    with pytest.raises(ArtifactError, match=r"not a saved perfml detector \(no detector.json\)"):
        load(saved)


def test_a_foreign_format_is_refused(saved: Path) -> None:
    edit_manifest(saved, format="someone-elses-model")
    with pytest.raises(ArtifactError, match="format is not 'perfml-detector'"):
        load(saved)


def test_a_newer_state_version_is_refused(fitted: Detector, saved: Path) -> None:
    edit_manifest(saved, state_version=fitted.state_version + 1)
    with pytest.raises(ArtifactError, match=f"state version {fitted.state_version + 1}"):
        load(saved)


def test_an_unknown_kind_is_refused(saved: Path) -> None:
    edit_manifest(saved, kind="crystal_ball")
    with pytest.raises(ArtifactError, match="'crystal_ball' is not known"):
        load(saved)


def test_a_listed_array_that_is_missing_is_refused(saved: Path) -> None:
    contents = members(saved)
    manifest = json.loads(contents["detector.json"])
    manifest["arrays"]["extra"] = {"dtype": "<f8", "shape": [1], "sha256": "0" * 64}
    contents["detector.json"] = json.dumps(manifest).encode()
    rewrite(saved, contents)
    with pytest.raises(ArtifactError, match="array 'extra' is missing"):
        load(saved)


class MakesADirectory:
    """Unpickling this calls ``os.mkdir(path)``: the proof that something was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.path),))


def test_a_pickled_array_is_refused_and_never_unpickled(saved: Path, tmp_path: Path) -> None:
    evidence = tmp_path / "unpickled"
    buffer = io.BytesIO()
    np.save(buffer, np.array([MakesADirectory(evidence)], dtype=object), allow_pickle=True)
    blob = buffer.getvalue()
    contents = members(saved)
    manifest = json.loads(contents["detector.json"])
    manifest["arrays"]["payload"] = {
        "dtype": "|O",
        "shape": [1],
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    contents["detector.json"] = json.dumps(manifest).encode()
    contents["arrays/payload.npy"] = blob
    rewrite(saved, contents)
    with pytest.raises(ArtifactError, match="array 'payload' is not a plain array"):
        load(saved)
    assert not evidence.exists()
    # The trap is real: loading it the unsafe way would have sprung it.
    np.load(io.BytesIO(blob), allow_pickle=True)
    assert evidence.is_dir()


def test_something_else_entirely_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    path.write_text("name,value\ncpu,1\n")
    with pytest.raises(ArtifactError, match=f"{path}: not a saved perfml detector"):
        load(path)
