"""Run a detector over a labelled corpus and score it: NAB's three profiles and the metrics.

Evaluation is three steps, so that a caller can watch or reuse any of them:

1. **plan**: :func:`nab_tasks` lists a NAB corpus's series, :func:`fleet_tasks` a generated
   fleet's — each (metric, host) series for a univariate detector, each host's metrics aligned
   into one wide frame for a multivariate one;
2. **score**: :func:`score_tasks` runs a detector over every task, from scratch per task, in a
   pool of processes when the work is large enough to pay for starting them; or
   :func:`read_results` takes scores a detector wrote in NAB's results layout;
3. **judge**: :func:`evaluate` scores the lot with NAB's three cost profiles
   (:func:`~perfml.evaluation.nab.score_corpus`, at NAB's swept threshold or a given one) and
   adds the detection metrics of :mod:`perfml.evaluation.scores` at each profile's threshold.

The protocols:

- **NAB's** (every univariate task): a fresh ``create(name, **params)`` scores the whole
  series with ``score()``, learning as it goes; the first 15% (at most 750 rows) is NAB's
  probation, where it may learn but is not judged. A detector that refuses to score before it
  is fitted (:class:`~perfml.detectors.errors.NotFittedError`) is fitted on exactly those
  probationary rows and scores the rest.
- **A fleet's hosts** (a multivariate detector): the host's metrics are aligned on their
  timestamps, the detector is fitted on the first 15% of rows and scores the remaining rows,
  which alone are judged (NAB's probation applies to them again), against the union of the
  host's windows over all its metrics.

Scores depend on the series alone, never on the process that computed them or on the order,
so results are the same with one worker or many.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from perfml.detectors import create
from perfml.detectors.base import Detector
from perfml.detectors.errors import NotFittedError
from perfml.detectors.frames import Floats, Millis
from perfml.detectors.series import SeriesStates, vectorised
from perfml.errors import PerfmlError, UsageError
from perfml.evaluation.nab import (
    PROBATION_FRACTION,
    PROFILES,
    CorpusScore,
    EvaluationError,
    WindowRows,
    probation_rows,
    score_corpus,
    window_rows,
)
from perfml.evaluation.scores import (
    DEFAULT_K,
    DetectionMetrics,
    detection_metrics,
    merge_windows,
)
from perfml.featurestore.schema import TIMESTAMP_TYPE
from perfml.sources.fleet import METRICS
from perfml.sources.nab import NabSeries, Window, clock, iter_corpus, read_series
from perfml.timeparse import to_epoch_ms

FIT_FRACTION = PROBATION_FRACTION
"""The share of a host's rows a multivariate detector is fitted on before it scores."""

PARALLEL_MIN_SECONDS = 3.0
"""Estimated serial work (after the first task) above which a process pool is started.

Starting a worker costs about a second (imports); below this the pool would not pay off.
"""

OnSeries = Callable[[str], None]
"""Told the key of each task as it finishes (for progress bars)."""


class CorpusNotFoundError(EvaluationError, UsageError):
    def __init__(self, path: Path, what: str) -> None:
        super().__init__(f"{path}: {what}")


class MissingResultsError(EvaluationError, UsageError):
    def __init__(self, results: Path, problem: str) -> None:
        super().__init__(f"{results}: {problem}")


class ResultsFormatError(EvaluationError):
    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")


class FleetLayoutError(EvaluationError):
    def __init__(self, data: Path, problem: str) -> None:
        super().__init__(f"{data}: {problem}")


class NoWindowsError(EvaluationError):
    def __init__(self, series: int) -> None:
        super().__init__(
            f"none of the {series} series has a labelled window after NAB's probationary "
            "period, so NAB's normalised score is undefined"
        )


class SeriesFailedError(EvaluationError):
    """Scoring one task failed; keeps the exit code of the failure it wraps."""

    def __init__(self, key: str, detector: str, problem: str, exit_code: int = 1) -> None:
        self.key = key
        self.exit_code = exit_code
        super().__init__(f"{detector} on {key}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        # The default would call the constructor with the message alone; workers send these.
        return (_rebuild_failure, (self.key, str(self), self.exit_code))


def _rebuild_failure(key: str, message: str, exit_code: int) -> SeriesFailedError:
    failure = SeriesFailedError.__new__(SeriesFailedError)
    EvaluationError.__init__(failure, message)
    failure.key, failure.exit_code = key, exit_code
    return failure


@dataclass(frozen=True)
class SeriesTask:
    """One unit of work: a series, or a host's series aligned on time, to score from scratch.

    ``windows`` are the labelled windows in epoch milliseconds; ``fit_fraction`` is 0 for
    NAB's protocol, else the share of rows to fit on before scoring (and judging) the rest.
    """

    key: str
    paths: tuple[Path, ...]
    columns: tuple[str, ...]
    windows: tuple[tuple[int, int], ...]
    fit_fraction: float = 0.0

    @property
    def size(self) -> int:
        """Bytes of input: what the scheduler takes as the task's cost."""
        return sum(path.stat().st_size for path in self.paths)


@dataclass(frozen=True)
class ScoredSeries:
    """A detector's scores on one series with the rows of its labelled windows."""

    key: str
    scores: Floats
    windows: tuple[WindowRows, ...]
    timestamps_ms: Millis


@dataclass(frozen=True)
class ProfileResult:
    """NAB's result for one profile and the detection metrics at its threshold."""

    corpus: CorpusScore
    files: dict[str, DetectionMetrics]
    metrics: DetectionMetrics = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", DetectionMetrics.combine(self.files.values()))


@dataclass(frozen=True)
class Evaluation:
    """A detector's results over a corpus for every NAB profile."""

    detector: str
    profiles: dict[str, ProfileResult]
    k: float = DEFAULT_K

    @property
    def series(self) -> int:
        return len(next(iter(self.profiles.values())).files)

    def score(self, profile: str = "standard") -> float:
        """NAB's normalised score (0 never fires, 100 perfect) under ``profile``."""
        return self.profiles[profile].corpus.score


# -- plan ----------------------------------------------------------------------------------


def nab_tasks(corpus: str | Path) -> list[SeriesTask]:
    """Every series of a NAB corpus (``data/<category>/*.csv`` + labels), NAB's protocol."""
    return [
        SeriesTask(s.key, (s.path,), ("value",), _window_ms(s.windows))
        for s in _corpus(Path(corpus))
    ]


def fleet_tasks(data: str | Path, multivariate: bool) -> list[SeriesTask]:
    """A generated fleet's tasks: its series (univariate) or its hosts (multivariate).

    A fleet is a NAB corpus laid out as ``data/<metric>/<host>.csv``; a host's frame has one
    column per metric, in the generator's order of :data:`~perfml.sources.fleet.METRICS`
    (any other metric after them, sorted).
    """
    data = Path(data)
    series = _corpus(data)
    if not multivariate:
        return nab_tasks(data)
    categories = {s.category for s in series}
    metrics = [m for m in METRICS if m in categories] + sorted(categories - set(METRICS))
    by_host: dict[str, dict[str, NabSeries]] = {}
    for one in series:
        by_host.setdefault(one.name, {})[one.category] = one
    tasks = []
    for host, found in sorted(by_host.items()):
        missing = [m for m in metrics if m not in found]
        if missing:
            raise FleetLayoutError(data, f"host {host!r} has no data/{missing[0]}/{host}.csv")
        parts = [found[m] for m in metrics]
        windows = tuple(w for part in parts for w in _window_ms(part.windows))
        paths = tuple(part.path for part in parts)
        tasks.append(SeriesTask(host, paths, tuple(metrics), windows, FIT_FRACTION))
    return tasks


def _corpus(path: Path) -> list[NabSeries]:
    if not path.is_dir():
        raise CorpusNotFoundError(path, "is not a folder")
    series = list(iter_corpus(path))
    if not series:
        raise CorpusNotFoundError(path, "holds no series (no data/<category>/*.csv)")
    return series


def _window_ms(windows: Iterable[Window]) -> tuple[tuple[int, int], ...]:
    return tuple((to_epoch_ms(start), to_epoch_ms(end)) for start, end in windows)


# -- score ---------------------------------------------------------------------------------


def score_tasks(
    tasks: Sequence[SeriesTask],
    detector: str,
    params: Mapping[str, Any] | None = None,
    *,
    workers: int | None = None,
    on_series: OnSeries | None = None,
) -> dict[str, ScoredSeries]:
    """Score every task with a fresh ``create(detector, **params)``; results in task order.

    ``workers=None`` decides alone: it scores the first task here, and if the rest would take
    more than :data:`PARALLEL_MIN_SECONDS` at that pace, hands it to ``os.cpu_count()``
    processes. ``workers=1`` never starts a process. The detector and its parameters are
    checked here first, so a wrong name or parameter fails at once.
    """
    params = dict(params or {})
    probe = create(detector, **params)
    if vectorised(probe) and all(len(task.columns) == 1 for task in tasks):
        together = score_together(tasks, probe)
        if on_series is not None:
            for task in tasks:
                on_series(task.key)
        return together
    module = type(probe).__module__
    done: dict[str, ScoredSeries] = {}

    def finished(result: ScoredSeries) -> None:
        done[result.key] = result
        if on_series is not None:
            on_series(result.key)

    pending = list(tasks)
    cpus = os.cpu_count() or 1
    limit = cpus if workers is None else max(1, workers)
    if workers is None and len(pending) > 1 and cpus > 1:
        first = pending.pop(0)
        began = time.perf_counter()
        finished(_run_wrapped(first, detector, params))
        per_byte = (time.perf_counter() - began) / max(first.size, 1)
        if per_byte * sum(task.size for task in pending) < PARALLEL_MIN_SECONDS:
            limit = 1
    if limit > 1 and len(pending) > 1:
        _score_in_pool(pending, detector, params, module, min(limit, len(pending)), finished)
    else:
        for task in pending:
            finished(_run_wrapped(task, detector, params))
    return {task.key: done[task.key] for task in tasks}


def score_together(tasks: Sequence[SeriesTask], detector: Detector) -> dict[str, ScoredSeries]:
    """Every task scored by ``detector``'s kind as one series each of one
    :class:`~perfml.detectors.series.SeriesStates`: the same scores as one detector per task
    (:func:`run_task`), one point of every series per NumPy pass."""
    states = SeriesStates.empty(detector.copy())
    rows = states.rows([task.key for task in tasks], add=True)
    parts: list[tuple[SeriesTask, Millis, Floats, int]] = []
    for task in tasks:
        frame = _read_frame(task)
        ts = clock(np.asarray(frame.column("ts").cast(pa.int64()).to_numpy(), dtype=np.int64))
        values = np.asarray(
            frame.column(task.columns[0]).cast(pa.float64()).to_numpy(zero_copy_only=False)
        )
        fit = math.floor(task.fit_fraction * len(ts))
        parts.append((task, ts, values, fit))
    states.learn(
        np.concatenate(
            [np.full(fit, row) for row, (*_, fit) in zip(rows.tolist(), parts, strict=True)]
        ),
        np.concatenate([ts[:fit] for _, ts, _, fit in parts]),
        np.concatenate([values[:fit] for _, _, values, fit in parts]),
    )
    every = np.concatenate([np.full(len(ts) - fit, row) for row, (_, ts, _, fit) in
                            zip(rows.tolist(), parts, strict=True)])  # fmt: skip
    scores = states.step(
        every,
        np.concatenate([ts[fit:] for _, ts, _, fit in parts]),
        np.concatenate([values[fit:] for _, _, values, fit in parts]),
    )
    out: dict[str, ScoredSeries] = {}
    at = 0
    for task, ts, _, fit in parts:
        mine, at = scores[at : at + len(ts) - fit], at + len(ts) - fit
        windows = merge_windows(window_rows(ts[fit:], task.windows))
        out[task.key] = ScoredSeries(task.key, mine, tuple(windows), ts[fit:])
    return out


def _score_in_pool(
    tasks: list[SeriesTask],
    detector: str,
    params: dict[str, Any],
    module: str,
    workers: int,
    finished: Callable[[ScoredSeries], None],
) -> None:
    # Spawned, not forked: forking a process that runs Arrow's threads can deadlock. The
    # workers import the detector's module, so a detector registered outside perfml (a
    # plugin, a test's toy) is known to them by name too.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=importlib.import_module, initargs=(module,)
    ) as pool:
        largest_first = sorted(tasks, key=lambda task: -task.size)
        futures = [pool.submit(_run_wrapped, task, detector, params) for task in largest_first]
        try:
            for future in concurrent.futures.as_completed(futures):
                finished(future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _run_wrapped(task: SeriesTask, detector: str, params: dict[str, Any]) -> ScoredSeries:
    """:func:`run_task`, with any failure wrapped to name the task (and cross processes)."""
    try:
        return run_task(task, detector, params)
    except SeriesFailedError:
        raise
    except PerfmlError as exc:
        raise SeriesFailedError(task.key, detector, str(exc), exc.exit_code) from exc
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
        raise SeriesFailedError(task.key, detector, problem) from exc


def run_task(task: SeriesTask, detector: str, params: Mapping[str, Any]) -> ScoredSeries:
    """Score one task from scratch, by the protocol its ``fit_fraction`` names."""
    frame = _read_frame(task)
    # rows are scored in file order; a row whose time went back is shown at the latest time
    ts = clock(np.asarray(frame.column("ts").cast(pa.int64()).to_numpy(), dtype=np.int64))
    frame = frame.set_column(
        frame.column_names.index("ts"), "ts", pa.array(ts).cast(frame.schema.field("ts").type)
    )
    model = create(detector, **params)
    if task.fit_fraction > 0.0:
        fit_rows = math.floor(task.fit_fraction * frame.num_rows)
        model.fit(frame.slice(0, fit_rows))
        scores = model.score(frame.slice(fit_rows))
        ts = ts[fit_rows:]
    else:
        try:
            scores = model.score(frame)
        except NotFittedError:
            probation = probation_rows(frame.num_rows)
            model = create(detector, **params).fit(frame.slice(0, probation))
            scores = np.concatenate([np.zeros(probation), model.score(frame.slice(probation))])
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != ts.shape or not np.isfinite(scores).all():
        raise SeriesFailedError(
            task.key, detector, f"gave {scores.shape} scores, not {len(ts)} finite ones"
        )
    windows = merge_windows(window_rows(ts, task.windows))
    return ScoredSeries(task.key, scores, tuple(windows), ts)


def _read_frame(task: SeriesTask) -> pa.Table:
    """The task's series; several are aligned on their common timestamps, one column each."""
    tables = [read_series(path) for path in task.paths]
    if len(tables) == 1:
        return tables[0]
    ts = tables[0].column("ts")
    if all(table.column("ts").equals(ts) for table in tables[1:]):
        columns = {name: t.column("value") for name, t in zip(task.columns, tables, strict=True)}
        return pa.table({"ts": ts, **columns})
    aligned = pd.concat(
        [
            pd.Series(
                t.column("value").to_numpy(),
                index=t.column("ts").cast(pa.int64()).to_numpy(),
                name=name,
            ).pipe(lambda s: s[~s.index.duplicated()])
            for name, t in zip(task.columns, tables, strict=True)
        ],
        axis=1,
        join="inner",
    ).sort_index()
    return pa.table(
        {
            "ts": pa.array(aligned.index.to_numpy(dtype=np.int64)).cast(TIMESTAMP_TYPE),
            **{name: pa.array(aligned[name].to_numpy()) for name in task.columns},
        }
    )


def read_results(
    corpus: str | Path, results: str | Path, detector: str | None = None
) -> tuple[str, dict[str, ScoredSeries]]:
    """A detector's scores for every series of ``corpus``, in NAB's results layout.

    ``results`` holds ``<category>/<detector>_<file>.csv`` (NAB's ``results/<detector>``), or
    is itself the category folder, or — given ``detector`` — is NAB's ``results`` folder
    holding ``<detector>/<category>/``; the files need ``timestamp`` and ``anomaly_score``
    columns. The detector's name is the files' common prefix, or ``detector``.
    Returns the detector's name and the scored series.
    """
    corpus, results = Path(corpus), Path(results)
    if not results.is_dir():
        raise MissingResultsError(results, "is not a folder")
    series = _corpus(corpus)
    categories = {one.category for one in series}
    if results.name not in categories and not any((results / c).is_dir() for c in categories):
        # NAB's results/ itself: one folder per detector
        inside = sorted(
            folder.name
            for folder in results.iterdir()
            if any((folder / c).is_dir() for c in categories)
        )
        if detector in inside:
            results = results / str(detector)
        elif inside:
            raise MissingResultsError(results, _several(inside))
    candidates: list[dict[str, Path]] = []
    for one in series:
        folder = results / one.category
        if not folder.is_dir() and results.name == one.category:
            folder = results
        suffix = f"_{one.name}.csv"
        found = {
            path.name.removesuffix(suffix): path
            for path in (sorted(folder.glob("*.csv")) if folder.is_dir() else [])
            if path.name.endswith(suffix)
        }
        if detector is not None:
            found = {detector: found[detector]} if detector in found else {}
        if not found:
            wanted = f"{detector or '<detector>'}{suffix}"
            raise MissingResultsError(results, f"has no {one.category}/{wanted} for {one.key}")
        candidates.append(found)
    names = set.intersection(*(set(found) for found in candidates))
    if len(names) != 1:
        problem = (
            _several(sorted(names))
            if names
            else "holds no detector's results for every series of the corpus"
        )
        raise MissingResultsError(results, problem)
    name = names.pop()
    scored = {
        one.key: _read_result(one, found[name])
        for one, found in zip(series, candidates, strict=True)
    }
    return name, scored


def _several(detectors: list[str]) -> str:
    return f"holds the results of several detectors ({', '.join(detectors)}): name one"


def _read_result(one: NabSeries, path: Path) -> ScoredSeries:
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                include_columns=["timestamp", "anomaly_score"],
                column_types={"timestamp": pa.timestamp("ms"), "anomaly_score": pa.float64()},
            ),
        )
    except (pa.ArrowInvalid, KeyError) as exc:
        problem = f"is not a NAB results file with timestamp and anomaly_score ({exc})"
        raise ResultsFormatError(path, " ".join(problem.split())) from None
    ts = np.asarray(table.column("timestamp").cast(pa.int64()).to_numpy(), dtype=np.int64)
    scores = np.asarray(table.column("anomaly_score").to_numpy(), dtype=np.float64)
    if not np.isfinite(scores).all():
        raise ResultsFormatError(path, "has a missing or non-finite anomaly_score")
    windows = merge_windows(window_rows(ts, _window_ms(one.windows)))
    return ScoredSeries(one.key, scores, tuple(windows), ts)


# -- judge ---------------------------------------------------------------------------------


def evaluate(
    series: Mapping[str, ScoredSeries],
    detector: str,
    threshold: float | None = None,
    k: float = DEFAULT_K,
) -> Evaluation:
    """NAB's three profiles (each at its swept threshold, or all at ``threshold``), with the
    detection metrics at each profile's threshold over each series' non-probationary rows."""
    if not any(_scored(s) for s in series.values()):
        raise NoWindowsError(len(series))
    inputs = {key: (s.scores, s.windows) for key, s in series.items()}
    profiles = {}
    for name, cost in PROFILES.items():
        corpus = score_corpus(inputs, cost, threshold)
        files = {
            key: detection_metrics(
                s.scores,
                corpus.threshold,
                s.windows,
                timestamps_ms=s.timestamps_ms,
                start=probation_rows(len(s.scores)),
            )
            for key, s in series.items()
        }
        profiles[name] = ProfileResult(corpus, files)
    return Evaluation(detector, profiles, k)


def _scored(series: ScoredSeries) -> list[WindowRows]:
    probation = probation_rows(len(series.scores))
    return [w for w in series.windows if w[1] >= probation]


def evaluate_nab(
    corpus: str | Path,
    detector: str,
    params: Mapping[str, Any] | None = None,
    *,
    threshold: float | None = None,
    workers: int | None = None,
) -> Evaluation:
    """Run ``detector`` over a NAB corpus by NAB's protocol and score it."""
    scored = score_tasks(nab_tasks(corpus), detector, params, workers=workers)
    return evaluate(scored, detector, threshold)


def evaluate_fleet(
    data: str | Path,
    detector: str,
    params: Mapping[str, Any] | None = None,
    *,
    threshold: float | None = None,
    workers: int | None = None,
) -> Evaluation:
    """Run ``detector`` over a generated fleet (per series, or per host if multivariate)."""
    multivariate = create(detector, **dict(params or {})).multivariate
    tasks = fleet_tasks(data, multivariate)
    return evaluate(score_tasks(tasks, detector, params, workers=workers), detector, threshold)
