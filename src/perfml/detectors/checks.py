"""The detector contract, checked: the conformance suite perfml holds its own detectors to,
shipped so that a plugin's author runs the same one (as river ships ``river.checks``).

Every check takes a detector's name in a registry, a :class:`Sample` of data (two weeks of a
host: univariate detectors get one metric, multivariate ones every metric; fitted on the first
ten days, scoring the last four) and a scratch folder, and raises :class:`ConformanceError`
naming what broke. They cover the scoring contract — one finite score in ``[0, 1]`` per row,
causality, scoring a frame equals updating row by row and changes nothing, learning a frame
equals updating row by row, determinism, missing values, unknown parameters refused — and the
saved form: a bit-exact round trip, and a damaged, foreign or booby-trapped file refused with a
clear message, never unpickled.

>>> import tempfile
>>> from perfml.detectors.builtin import builtin_detectors
>>> failed = check_detector("streaming", builtin_detectors(), workdir=tempfile.mkdtemp())
>>> failed
[]
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from perfml.detectors.base import DETECTORS, Detector, load
from perfml.detectors.errors import ArtifactError, BadParamsError, DetectorError
from perfml.plugins import Registry

Floats = npt.NDArray[np.float64]
Detectors = Registry[type[Detector]]

STEPS_PER_DAY = 288
"""Five-minute steps."""


class ConformanceError(DetectorError, AssertionError):
    """A detector broke the contract; the message names the detector, the check and how."""

    def __init__(self, detector: str, check: str, problem: str) -> None:
        self.detector, self.check, self.problem = detector, check, problem
        super().__init__(f"detector {detector!r} fails {check}: {problem}")


@dataclass(frozen=True)
class Sample:
    """The data the checks run on: shared timestamps (ms), every metric of one host, the one a
    univariate detector reads, and how many rows the detector is fitted on."""

    ts: npt.NDArray[np.int64]
    metrics: Mapping[str, Floats]
    univariate: str
    fit_rows: int

    @property
    def history(self) -> slice:
        return slice(0, self.fit_rows)

    @property
    def later(self) -> slice:
        return slice(self.fit_rows, self.ts.size)

    def frame(self, detector: Detector, rows: slice, **changed: Floats) -> pa.Table:
        """The rows as ``detector`` reads them: ``ts, value`` or ``ts`` and every metric."""
        metrics = {**self.metrics, **changed}
        if not detector.multivariate:
            metrics = {"value": metrics[self.univariate]}
        columns: dict[str, Any] = {"ts": pa.array(self.ts[rows], pa.timestamp("ms", tz="UTC"))}
        columns |= {name: pa.array(series[rows]) for name, series in metrics.items()}
        return pa.table(columns)


def synthetic_sample(seed: int = 20240101, days: int = 14, fit_days: int = 10) -> Sample:
    """Two weeks of a plausible host, without anomalies: a daily and a weekly cycle shared by
    six correlated metrics (CPU, memory, disk, network, request rate and latency), noise."""
    rng = np.random.default_rng(seed)
    steps = days * STEPS_PER_DAY
    ts = 1_704_067_200_000 + 300_000 * np.arange(steps, dtype=np.int64)
    hours = np.arange(steps) / 12.0
    load = 0.5 + 0.3 * np.sin(2 * np.pi * (hours - 9) / 24) ** 2
    load *= np.where((hours // 24) % 7 >= 5, 0.7, 1.0)
    load += 0.05 * rng.standard_normal(steps).cumsum() / np.sqrt(steps)

    def noisy(base: Floats, scale: float) -> Floats:
        return np.asarray(base + scale * rng.standard_normal(steps), dtype=np.float64)

    metrics = {
        "cpu_util": noisy(100 * load, 3.0).clip(0, 100),
        "mem_util": noisy(40 + 20 * load, 1.0),
        "disk_iops": noisy(300 * load, 20.0).clip(0),
        "net_bytes": noisy(5e6 * load, 2e5).clip(0),
        "request_rate": noisy(800 * load, 30.0).clip(0),
        "request_latency_ms": noisy(20 + 30 * load**3, 2.0).clip(1),
    }
    return Sample(ts, metrics, "request_latency_ms", fit_days * STEPS_PER_DAY)


@dataclass
class _Case:
    """One detector under check: its name, a fitted copy and the scores of the later rows."""

    name: str
    registry: Detectors
    sample: Sample
    workdir: Path
    _fitted: Detector | None = field(default=None, repr=False)
    _later: Floats | None = field(default=None, repr=False)

    def new(self, **params: Any) -> Detector:
        return self.registry.get(self.name)(**params)

    @property
    def fitted(self) -> Detector:
        if self._fitted is None:
            detector = self.new()
            self._fitted = detector.fit(self.sample.frame(detector, self.sample.history))
        return self._fitted

    @property
    def later_scores(self) -> Floats:
        if self._later is None:
            self._later = self.fitted.score(self.sample.frame(self.fitted, self.sample.later))
        return self._later

    def saved(self, detector: Detector, name: str) -> bytes:
        path = self.workdir / f"{self.name}-{name}.zip"
        detector.save(path)
        return path.read_bytes()

    def load(self, path: Path) -> Detector:
        return load(path, self.registry)


Check = Callable[[_Case], None]
_CHECKS: dict[str, Check] = {}


def _check(function: Check) -> Check:
    _CHECKS[function.__name__.removeprefix("check_")] = function
    return function


def _arrays(frame: pa.Table) -> tuple[npt.NDArray[np.int64], Floats]:
    ts = frame.column("ts").cast(pa.int64()).to_numpy()
    values = np.column_stack([frame.column(c).to_numpy() for c in frame.column_names[1:]])
    return ts, values[:, 0] if values.shape[1] == 1 else values


def _same(actual: Any, expected: Any, what: str, atol: float = 0.0) -> str | None:
    """None if equal (within ``atol``), else what differs."""
    try:
        if atol:
            np.testing.assert_allclose(actual, expected, rtol=0, atol=atol)
        else:
            np.testing.assert_array_equal(actual, expected)
    except AssertionError as error:
        return f"{what}: {str(error).strip().splitlines()[0]}"
    return None


# -- the scoring contract ---------------------------------------------------------------------


@_check
def check_scores_in_unit_interval(case: _Case) -> None:
    """One finite float64 score in ``[0, 1]`` per row."""
    scores = case.later_scores
    rows = case.sample.later.stop - case.sample.later.start
    if scores.shape != (rows,) or scores.dtype != np.float64:
        raise ConformanceError(case.name, "scores", f"{scores.shape} {scores.dtype} for {rows}")
    if not np.all(np.isfinite(scores)) or not np.all((scores >= 0.0) & (scores <= 1.0)):
        raise ConformanceError(case.name, "scores", "a score is not finite or not in [0, 1]")


@_check
def check_causal(case: _Case) -> None:
    """A row's score depends on earlier rows only: changing the future changes no past score."""
    later = case.sample.later
    for k in (1, 200, 1000):
        altered = {}
        for name, series in case.sample.metrics.items():
            changed = series.copy()
            future = np.arange(changed.size) >= later.start + k
            changed[future] = changed[future] * 3.0 + 17.0
            changed[later.start + k + 5] = np.nan
            altered[name] = changed
        scores = case.fitted.score(case.sample.frame(case.fitted, later, **altered))
        differs = _same(scores[:k], case.later_scores[:k], f"the first {k} scores changed")
        if differs:
            raise ConformanceError(case.name, "causality", differs)
        if np.array_equal(scores[k:], case.later_scores[k:]):
            raise ConformanceError(case.name, "causality", "the changed rows score the same")


@_check
def check_score_is_update_row_by_row(case: _Case) -> None:
    """Scoring a frame gives what updating a copy row by row gives, and changes nothing."""
    before = case.saved(case.fitted, "before")
    frame = case.sample.frame(case.fitted, case.sample.later)
    problem = _same(case.fitted.score(frame), case.later_scores, "scoring again")
    if problem is None and case.saved(case.fitted, "after") != before:
        problem = "scoring changed the detector's state"
    streamed = case.fitted.copy()
    ts, values = _arrays(frame)
    by_row = [streamed.update(t, v) for t, v in zip(ts.tolist(), values, strict=True)]
    if problem is None and not all(isinstance(score, float) for score in by_row):
        problem = "update() returned something other than a float"
    problem = problem or _same(by_row, case.later_scores, "update() row by row", atol=1e-12)
    if problem is None and case.saved(case.fitted, "after-copy") != before:
        problem = "updating a copy changed the original"
    if problem:
        raise ConformanceError(case.name, "score/update", problem)


@_check
def check_learn_is_update_row_by_row(case: _Case) -> None:
    """Learning a frame leaves the state updating row by row leaves."""
    later = case.sample.later
    first, second = slice(later.start, later.start + 500), slice(later.start + 500, later.stop)
    ts, values = _arrays(case.sample.frame(case.fitted, first))
    at_once, by_row = case.fitted.copy(), case.fitted.copy()
    at_once.learn(ts, values)
    for t, v in zip(ts.tolist(), values, strict=True):
        by_row.update(t, v)
    following = case.sample.frame(case.fitted, second)
    problem = _same(at_once.score(following), by_row.score(following), "after", atol=1e-12)
    if problem:
        raise ConformanceError(case.name, "learn/update", problem)


@_check
def check_no_rows_no_scores(case: _Case) -> None:
    """Scoring no rows gives no scores."""
    shape = case.fitted.score(case.sample.frame(case.fitted, slice(0, 0))).shape
    if shape != (0,):
        raise ConformanceError(case.name, "no rows", f"scores of shape {shape}")


@_check
def check_fit_is_deterministic_from_scratch(case: _Case) -> None:
    """Fitting twice gives the same model; fitting again forgets what was fitted before."""
    sample, params = case.sample, case.fitted.params.model_dump()
    history = sample.frame(case.fitted, sample.history)
    later = sample.frame(case.fitted, sample.later)
    first = case.new(**params).fit(history)
    second = case.new(**params).fit(later)
    second.fit(history)
    problem = _same(first.score(later), case.later_scores, "a second fit") or _same(
        second.score(later), case.later_scores, "a refit"
    )
    if problem:
        raise ConformanceError(case.name, "determinism", problem)


def _with_missing(sample: Sample, rows: slice, seed: int) -> dict[str, Floats]:
    """Every metric with about 2% of its values and an hour of all of them missing."""
    rng = np.random.default_rng(seed)
    changed = {}
    for name, series in sample.metrics.items():
        copied = series.copy()
        window = copied[rows]
        window[rng.random(window.size) < 0.02] = np.nan
        window[100:112] = np.nan
        changed[name] = copied
    return changed


@_check
def check_missing_values(case: _Case) -> None:
    """Missing values give valid scores, and a detector that lived through gaps goes on."""
    sample = case.sample
    detector = case.new()
    detector.fit(sample.frame(detector, sample.history, **_with_missing(sample, sample.history, 1)))
    gappy = sample.frame(detector, sample.later, **_with_missing(sample, sample.later, 2))

    def valid(scores: Floats) -> bool:
        return bool(np.all(np.isfinite(scores)) and np.all((scores >= 0.0) & (scores <= 1.0)))

    if not valid(detector.score(gappy)):
        raise ConformanceError(case.name, "missing values", "a score is not finite or in [0, 1]")
    ts, values = _arrays(gappy.slice(0, 500))
    for t, v in zip(ts.tolist(), values, strict=True):
        detector.update(t, v)
    rest = slice(sample.later.start + 500, sample.later.stop)
    after = detector.score(sample.frame(detector, rest))
    if not valid(after) or not np.median(after) < 0.95:
        raise ConformanceError(
            case.name, "missing values", f"after the gaps the median score is {np.median(after)}"
        )


@_check
def check_unknown_parameters_refused(case: _Case) -> None:
    """An unknown parameter is refused, naming it."""
    try:
        case.new(no_such_knob=1)
    except BadParamsError as error:
        if "unknown parameter no_such_knob" not in str(error):
            raise ConformanceError(case.name, "parameters", f"the refusal says {error}") from None
        return
    raise ConformanceError(case.name, "parameters", "no_such_knob=1 was accepted")


# -- the saved form -----------------------------------------------------------------------------


@_check
def check_round_trip_bit_for_bit(case: _Case) -> None:
    """Saving then loading scores bit for bit, saves the same bytes, and learns alike."""
    fitted, sample = case.fitted, case.sample
    path = case.workdir / f"{case.name}-model.zip"
    digest = fitted.save(path)
    problem = None
    if digest != hashlib.sha256(path.read_bytes()).hexdigest():
        problem = "save() returned another digest than the file's"
    loaded = case.load(path)
    if problem is None and (
        type(loaded) is not type(fitted)
        or loaded.params != fitted.params
        or loaded.columns != fitted.columns
    ):
        problem = "the loaded detector differs in type, parameters or columns"
    problem = problem or _same(
        loaded.score(sample.frame(loaded, sample.later)), case.later_scores, "loaded scores"
    )
    if problem is None and (
        case.saved(fitted, "again") != path.read_bytes()
        or case.saved(loaded, "reloaded") != path.read_bytes()
    ):
        problem = "the same model saved to other bytes"
    ts, values = _arrays(sample.frame(fitted, sample.later))
    original = fitted.copy()
    for t, v in zip(ts[:50].tolist(), values[:50], strict=True):
        if problem is None and loaded.update(t, v) != original.update(t, v):
            problem = "the loaded detector learns otherwise"
    if problem is None and case.saved(loaded, "a") != case.saved(original, "b"):
        problem = "after learning alike, the two save other bytes"
    if problem:
        raise ConformanceError(case.name, "round trip", problem)


@_check
def check_unfitted_round_trip(case: _Case) -> None:
    """An unfitted detector saves and loads."""
    path = case.workdir / f"{case.name}-unfitted.zip"
    case.new().save(path)
    if case.load(path).name != case.name:
        raise ConformanceError(case.name, "unfitted round trip", "loaded another kind")


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rewrite(path: Path, contents: Mapping[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, blob in contents.items():
            archive.writestr(name, blob)


def _edited_manifest(path: Path, **changes: Any) -> None:
    contents = _members(path)
    manifest = json.loads(contents["detector.json"])
    manifest.update(changes)
    contents["detector.json"] = json.dumps(manifest).encode()
    _rewrite(path, contents)


class _MakesADirectory:
    """Unpickling this calls ``os.mkdir(path)``: the proof that something was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.path),))


def _damages(case: _Case, saved: Path) -> Iterator[tuple[str, Callable[[Path], object], str]]:
    """(what, how to damage a copy of ``saved``, what the refusal must say)."""
    blob = saved.read_bytes()

    def truncated(keep: float) -> Callable[[Path], object]:
        return lambda path: path.write_bytes(blob[: int(len(blob) * keep)])

    for keep in (0.0, 0.1, 0.5, 0.99):
        yield f"truncated to {keep:.0%}", truncated(keep), "not a saved perfml detector|truncated"
    contents = _members(saved)
    arrays = [n for n in sorted(contents) if n.startswith("arrays/")]
    if arrays:
        name = arrays[0]

        def flip_array(path: Path) -> None:
            changed = dict(contents)
            damaged = bytearray(changed[name])
            damaged[-1] ^= 0x01
            changed[name] = bytes(damaged)
            _rewrite(path, changed)

        array = name.removeprefix("arrays/").removesuffix(".npy")
        yield "an array's byte flipped", flip_array, f"array '{array}' does not match its SHA-256"

    def flip_file(path: Path) -> None:
        with zipfile.ZipFile(path) as archive:
            info = max(archive.infolist(), key=lambda i: i.compress_size)
        damaged = bytearray(path.read_bytes())
        # The member's data follow its 30-byte local header, its name and its extra field.
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        damaged[start + info.compress_size // 2] ^= 0xFF
        path.write_bytes(bytes(damaged))

    yield "a byte of the file flipped", flip_file, "unreadable|SHA-256|not a plain array|not JSON"

    def no_manifest(path: Path) -> None:
        _rewrite(path, {k: v for k, v in contents.items() if k != "detector.json"})

    yield "no manifest", no_manifest, r"not a saved perfml detector \(no detector.json\)"
    yield (
        "a foreign format",
        lambda p: _edited_manifest(p, format="someone-elses-model"),
        "format is not 'perfml-detector'",
    )
    newer = case.fitted.state_version + 1
    yield (
        "a newer state version",
        lambda p: _edited_manifest(p, state_version=newer),
        f"state version {newer}",
    )
    yield (
        "an unknown kind",
        lambda p: _edited_manifest(p, kind="crystal_ball"),
        "'crystal_ball' is not known",
    )

    def missing_array(path: Path) -> None:
        manifest = json.loads(contents["detector.json"])
        manifest["arrays"]["extra"] = {"dtype": "<f8", "shape": [1], "sha256": "0" * 64}
        _rewrite(path, {**contents, "detector.json": json.dumps(manifest).encode()})

    yield "a listed array missing", missing_array, "array 'extra' is missing"
    yield (
        "not a zip at all",
        lambda p: p.write_text("name,value\ncpu,1\n"),
        "not a saved perfml detector",
    )


@_check
def check_damaged_files_refused(case: _Case) -> None:
    """A damaged or foreign saved file is refused with a message saying why."""
    import re

    saved = case.workdir / f"{case.name}-pristine.zip"
    case.fitted.save(saved)
    for what, damage, expected in _damages(case, saved):
        copy = case.workdir / f"{case.name}-damaged.zip"
        copy.write_bytes(saved.read_bytes())
        damage(copy)
        try:
            case.load(copy)
        except ArtifactError as error:
            if not re.search(expected, str(error)):
                raise ConformanceError(case.name, what, f"the refusal says {error}") from None
            continue
        raise ConformanceError(case.name, what, "the damaged file was loaded")


@_check
def check_pickle_never_loaded(case: _Case) -> None:
    """A pickled array is refused and never unpickled."""
    saved = case.workdir / f"{case.name}-trapped.zip"
    case.fitted.save(saved)
    evidence = case.workdir / f"{case.name}-unpickled"
    buffer = io.BytesIO()
    np.save(buffer, np.array([_MakesADirectory(evidence)], dtype=object), allow_pickle=True)
    blob = buffer.getvalue()
    contents = _members(saved)
    manifest = json.loads(contents["detector.json"])
    digest = hashlib.sha256(blob).hexdigest()
    manifest["arrays"]["payload"] = {"dtype": "|O", "shape": [1], "sha256": digest}
    contents["detector.json"] = json.dumps(manifest).encode()
    contents["arrays/payload.npy"] = blob
    _rewrite(saved, contents)
    try:
        case.load(saved)
    except ArtifactError as error:
        if "array 'payload' is not a plain array" not in str(error):
            raise ConformanceError(case.name, "pickle", f"the refusal says {error}") from None
    else:
        raise ConformanceError(case.name, "pickle", "a pickled array was loaded")
    if evidence.exists():
        raise ConformanceError(case.name, "pickle", "the pickled array was unpickled")


# -- one state per series --------------------------------------------------------------------


def _three_series(case: _Case) -> list[dict[str, Floats]]:
    """The sample's metrics as three hosts: as they are, scaled and offset, and a day late."""
    shifted = STEPS_PER_DAY
    return [
        dict(case.sample.metrics),
        {name: 2.0 * series + 5.0 for name, series in case.sample.metrics.items()},
        {name: np.roll(series, shifted) for name, series in case.sample.metrics.items()},
    ]


def _interleaved(
    case: _Case, hosts: list[dict[str, Floats]], rows: slice
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64], Floats]:
    """The hosts' rows in time order, one host after another at each time."""
    detector = case.fitted
    parts = [_arrays(case.sample.frame(detector, rows, **host)) for host in hosts]
    count = rows.stop - rows.start
    series = np.tile(np.arange(len(hosts), dtype=np.intp), count)
    ts = np.repeat(parts[0][0], len(hosts))
    values = np.stack([values for _, values in parts], axis=1)
    shaped = values.reshape(count * len(hosts), *values.shape[2:])
    return series, ts, shaped


@_check
def check_series_states_match_one_detector_each(case: _Case) -> None:
    """A :class:`~perfml.detectors.series.SeriesStates` of three hosts, fed their points
    interleaved, scores each host as a detector of its own does; scoring without learning
    gives each point the score it gets alone, and changes nothing."""
    from perfml.detectors.series import SeriesStates

    hosts, names = _three_series(case), ["a", "b", "c"]
    params = case.fitted.params.model_dump()
    start = case.sample.fit_rows
    scored, probe = slice(start, start + 300), slice(start + 300, start + 301)
    states = SeriesStates.empty(case.new(**params))
    rows = states.rows(names, add=True)
    series, ts, values = _interleaved(case, hosts, case.sample.history)
    states.detector.columns = case.fitted.columns
    states.fit(rows[series], ts, values)
    series, ts, values = _interleaved(case, hosts, scored)
    alone = states.score(rows[series[:3]], ts[:3], values[:3])
    stepped = states.step(rows[series], ts, values)
    problem = _same(alone, stepped[:3], "scoring without learning, then with")
    for host, own in enumerate(hosts):
        single = case.new(**params)
        single.fit(case.sample.frame(single, case.sample.history, **own))
        frame = case.sample.frame(single, scored, **own)
        expected = single.score(frame)
        problem = problem or _same(stepped[series == host], expected, f"host {host}", atol=1e-9)
        single.learn(*_arrays(frame))
        following = case.sample.frame(single, probe, **own)
        mine = states.series(names[host]).score(following)
        problem = problem or _same(mine, single.score(following), f"host {host}'s own state")
    if problem:
        raise ConformanceError(case.name, "series states", problem)


@_check
def check_series_states_round_trip(case: _Case) -> None:
    """The states of many series save and load to the same scores, and save to the same bytes."""
    from perfml.detectors.series import SeriesStates, load_series

    hosts = _three_series(case)
    states = SeriesStates.empty(case.new(**case.fitted.params.model_dump()))
    rows = states.rows(["a", "b", "c"], add=True)
    series, ts, values = _interleaved(case, hosts, case.sample.history)
    states.detector.columns = case.fitted.columns
    states.fit(rows[series], ts, values)
    states.refresh_prior()
    first = case.workdir / f"{case.name}-series-1.zip"
    second = case.workdir / f"{case.name}-series-2.zip"
    states.save(first)
    back = load_series(first, case.registry)
    back.save(second)
    problem = None
    if first.read_bytes() != second.read_bytes():
        problem = "saving the loaded states gives other bytes"
    if back.entities != ["a", "b", "c"]:
        problem = problem or f"entities {back.entities} after a round trip"
    series, ts, values = _interleaved(case, hosts, case.sample.later)
    probe = rows[series], ts, values
    problem = problem or _same(back.score(*probe), states.score(*probe), "scores after loading")
    unseen = np.full(len(ts), -1, np.intp)
    prior = back.score(unseen, ts, values)
    problem = problem or _same(prior, states.score(unseen, ts, values), "the prior's scores")
    if problem:
        raise ConformanceError(case.name, "series round trip", problem)


@_check
def check_state_size_bounded(case: _Case) -> None:
    """A state does not grow with the data it has seen, and stays within the detector's
    declared ``max_state_bytes``."""

    def size(detector: Detector) -> int:
        _, arrays = detector.get_state()
        return sum(np.asarray(array).nbytes for array in arrays.values())

    fitted = size(case.fitted)
    longer = case.fitted.copy()
    longer.learn(*_arrays(case.sample.frame(longer, case.sample.later)))
    problem = None
    if size(longer) > fitted:
        problem = f"{size(longer)} bytes after 4 more days, {fitted} after fitting"
    bound = type(case.fitted).max_state_bytes
    if problem is None and bound is not None and max(fitted, size(longer)) > bound:
        problem = f"{max(fitted, size(longer))} bytes, over its declared {bound}"
    if problem:
        raise ConformanceError(case.name, "bounded state", problem)


CHECKS: tuple[str, ...] = tuple(_CHECKS)
"""The names of every check, in the order they run."""


class Checker:
    """Runs checks on one detector, fitting it once (see :func:`check_detector`)."""

    def __init__(
        self,
        name: str,
        registry: Detectors | None = None,
        sample: Sample | None = None,
        workdir: str | os.PathLike[str] | None = None,
    ) -> None:
        chosen = registry or DETECTORS
        chosen.get(name)  # an unknown name fails here, naming the known ones
        folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp())
        folder.mkdir(parents=True, exist_ok=True)
        self._case = _Case(name, chosen, sample or synthetic_sample(), folder)

    def run(self, check: str) -> None:
        """Run the check named ``check`` (one of :data:`CHECKS`); raises
        :class:`ConformanceError` when the detector breaks it."""
        _CHECKS[check](self._case)


def check_detector(
    name: str,
    registry: Detectors | None = None,
    sample: Sample | None = None,
    workdir: str | os.PathLike[str] | None = None,
) -> list[ConformanceError]:
    """Run every check on the detector ``name`` of ``registry`` (the default one unless given)
    on ``sample`` (:func:`synthetic_sample` unless given); returns the failures (none: it
    keeps the contract)."""
    checker = Checker(name, registry, sample, workdir)
    failures = []
    for check in CHECKS:
        try:
            checker.run(check)
        except ConformanceError as failure:
            failures.append(failure)
    return failures
