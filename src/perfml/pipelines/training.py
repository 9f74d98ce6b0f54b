"""The built-in training pipeline: query features → preprocess → train → evaluate → register.

Every input is a run parameter, JSON-simple, so the same pipeline runs on the local runner and
compiles to Kubeflow — what to train on (``metrics``, ``entities``, the window
``start``/``end`` and the held-out share ``holdout``), what to train (``detector``,
``detector_params``, ``model``), whether to promote (``promote``, ``alias``, ``gate``, and the
share ``validation`` of the held-out window that chooses thresholds) and the run's id
(``run_id``) — except the parts of the workspace the steps use, the feature store and
the registry, which each job opens in its own process (:class:`~perfml.pipelines.dsl.Part`).

- **query** checks the selection against the store (points per series over the window, by
  DuckDB) and writes it as JSON; a metric with no point in the window fails the run here.
- **preprocess** streams the training part of the window (``[start, split)``) into an Arrow IPC
  stream, batch by batch, never holding more than one batch (univariate: the long points of
  the metric from :meth:`FeatureStore.stream`; multivariate: each entity's aligned wide frame).
- **train** learns *one state per series*: each entity of a univariate model's metric (or each
  entity's wide frame, for a multivariate model) learns from its own history, and a *fleet
  prior* (the states merged) is what an entity never seen starts from. Entities are learnt
  side by side, a bounded number of rows at a time (a detector trained in one batch, e.g.
  ``iforest``, is fitted on each entity's frame). The saved
  :class:`~perfml.detectors.series.SeriesStates` is the step's artifact. With ``keep_from``
  (a version, e.g. production's) and ``refresh`` (entities), only the ``refresh`` entities,
  and those the version never had, keep the states just learnt: the version's other entities
  hold its states, byte for byte (what the controller asks when part of a fleet drifted).
- **evaluate** scores the held-out window ``[split, end)`` with the promotion gate's own
  evaluator (:class:`~perfml.evaluation.labelled_window.LabelledWindowEvaluator`: each entity
  from its own state; the threshold swept on the window's first ``validation`` share, NAB
  standard, event and point F1 at it on the rest), and writes the figures as JSON with a note
  saying how the threshold was chosen. Judged, the candidate then learns the held-out rows, as
  the live loop would have (``current``): what is served knows the whole window — except
  the entities kept from ``keep_from``, whose states stay that version's.
- **register** records that version with its lineage (the run id, the whole window
  ``[start, end)``, the features, the entities it learnt and the figures it showed before it
  learnt the held-out rows — its threshold is the one chosen on the validation slice; with
  ``keep_from``, tags and a description saying what was refreshed and kept) and,
  with ``promote``, moves the alias through the gate, the candidate as it was before the
  held-out rows and the holder evaluated on the same held-out window; it returns the
  :class:`~perfml.pipelines.outcomes.TrainingOutcome`.

>>> build_training_pipeline().order
('query', 'preprocess', 'train', 'evaluate', 'register')
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from perfml.errors import UsageError
from perfml.pipelines.catalog import pipeline
from perfml.pipelines.dsl import (
    Param,
    Part,
    Pipeline,
    Ref,
    Resources,
    StepDefinition,
    Task,
    step,
)
from perfml.pipelines.errors import PipelineError
from perfml.pipelines.outcomes import GateVerdict, TrainingOutcome
from perfml.timeparse import parse_instant

if TYPE_CHECKING:
    from perfml.detectors.series import SeriesStates
    from perfml.featurestore import FeatureStore
    from perfml.registry import ModelRegistry

PIPELINE = "training"
LONG_BATCH = pa.schema(
    [("entity", pa.string()), ("ts", pa.timestamp("ms", tz="UTC")), ("value", pa.float64())]
)
"""The univariate training stream: the points of one metric, by entity then time."""

DEFAULTS: dict[str, Any] = {
    "entities": None,
    "holdout": 0.2,
    "detector_params": {},
    "step": "5m",
    "batch_rows": 65_536,
    "promote": False,
    "alias": "production",
    "gate": [],
    "validation": 0.5,  # the gate's own default (registry.gate_validation)
    "train_workers": 0,
    "train_chunk_rows": 2_000_000,
    "keep_from": None,
    "refresh": None,
}
"""Run parameters with a default; the others must be given."""


class TrainingError(PipelineError):
    """The root of the training pipeline's failures."""


class NoTrainingDataError(TrainingError):
    def __init__(self, metric: str, start: str, end: str) -> None:
        self.metric = metric
        super().__init__(f"no points of {metric!r} in the store between {start} and {end}")


class KeptStatesMismatchError(TrainingError, UsageError):
    def __init__(self, keep_from: str, kept: str, detector: str) -> None:
        self.keep_from = keep_from
        super().__init__(
            f"cannot keep the states of {keep_from} ({kept}) in a {detector} model: train the "
            "same detector with the same parameters to keep them"
        )


class UnknownMetricError(TrainingError, UsageError):
    """A metric the store has never held: no retry can find it (a permanent failure)."""

    def __init__(self, metric: str, known: Sequence[str]) -> None:
        self.metric = metric
        listed = ", ".join(known[:20]) + (", …" if len(known) > 20 else "") or "none"
        super().__init__(f"no metric {metric!r} in the store (its metrics: {listed})")


class BadTrainingWindowError(TrainingError, UsageError):
    def __init__(self, problem: str) -> None:
        super().__init__(f"training window: {problem}")


def split_instant(start: str, end: str, holdout: float) -> datetime:
    """Where training data ends and the held-out part begins."""
    first, last = parse_instant(start, "start"), parse_instant(end, "end")
    if last <= first:
        raise BadTrainingWindowError(f"end {end} is not after start {start}")
    if not 0.0 < holdout < 1.0:
        raise BadTrainingWindowError(f"holdout {holdout!r} must be between 0 and 1")
    split = first + (last - first) * (1.0 - holdout)
    return split.replace(microsecond=0)


training_step: Callable[..., Callable[[Callable[..., Any]], StepDefinition]] = step
"""``@step``, typed: each step below is a :class:`StepDefinition`."""


# -- the steps -------------------------------------------------------------------------------


@training_step(
    outputs=("selection",),
    timeout=600,
    retries=1,
    backoff=1.0,
    resources=Resources(cpu=1, memory="1Gi"),
)
def query(
    store: FeatureStore,
    metrics: list[str],
    start: str,
    end: str,
    selection: Path,
    entities: list[str] | None = None,
) -> dict[str, Any]:
    """Points per series of ``metrics`` over ``[start, end)``; fails on a metric without any,
    at once (:class:`UnknownMetricError`, not retried) when the store has never held it."""
    known = store.manifest.series
    for metric in metrics:
        if metric not in known:
            raise UnknownMetricError(metric, sorted(known))
    counts = store.resample("1d", "count", metrics, entities, start, end)
    points: dict[str, dict[str, int]] = {m: {} for m in metrics}
    for metric, entity, n in zip(
        counts.column("metric").to_pylist(),
        counts.column("entity").to_pylist(),
        counts.column("value").to_pylist(),
        strict=True,
    ):
        points[metric][entity] = points[metric].get(entity, 0) + int(n)
    for metric in metrics:
        if not points[metric]:
            raise NoTrainingDataError(metric, start, end)
    # Multivariate models need every metric of an entity: keep entities that have them all.
    common = sorted(set.intersection(*(set(p) for p in points.values())))
    found = {
        "metrics": metrics,
        "entities": common,
        "points": points,
        "window": [start, end],
        "store_version": store.manifest.version,
    }
    selection.write_text(json.dumps(found, indent=2, sort_keys=True))
    print(f"{sum(sum(p.values()) for p in points.values()):,} points, {len(common)} entities")
    return {"entities": len(common), "points": sum(sum(p.values()) for p in points.values())}


@training_step(
    outputs=("batches",),
    timeout=1800,
    retries=1,
    backoff=2.0,
    resources=Resources(cpu=1, memory="1Gi"),
)
def preprocess(
    store: FeatureStore,
    selection: Path,
    detector: str,
    start: str,
    end: str,
    holdout: float,
    step: str,
    batch_rows: int,
    batches: Path,
) -> dict[str, Any]:
    """The training part of the window as an Arrow IPC stream, one batch at a time."""
    from perfml.detectors import create

    chosen = json.loads(selection.read_text())
    metrics, entities = chosen["metrics"], chosen["entities"]
    split = split_instant(start, end, holdout)
    multivariate = create(detector).multivariate
    if multivariate:
        schema = pa.schema(
            [*LONG_BATCH.remove(LONG_BATCH.get_field_index("value"))]
            + [pa.field(m, pa.float64()) for m in metrics]
        )
        source = _wide_batches(store, metrics, entities, start, split, step, batch_rows)
    else:
        if len(metrics) != 1:
            raise UnivariateMetricsError(detector, metrics)
        schema = LONG_BATCH
        source = (
            b.select(["entity", "ts", "value"])
            for b in store.stream(metrics, entities, start, split, batch_rows=batch_rows)
        )
    rows = count = 0
    with pa.OSFile(str(batches), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for batch in source:
            if batch.num_rows == 0:
                continue
            writer.write_batch(_cast(batch, schema))
            rows += batch.num_rows
            count += 1
    print(f"{rows:,} training rows in {count} batches, up to {split:%Y-%m-%d %H:%M}")
    return {"rows": rows, "batches": count, "split": split.isoformat()}


class UnivariateMetricsError(TrainingError, UsageError):
    def __init__(self, detector: str, metrics: list[str]) -> None:
        super().__init__(
            f"detector {detector!r} models one metric, not {len(metrics)} ({', '.join(metrics)}):"
            " train one model per metric"
        )


def _wide_batches(
    fs: FeatureStore,
    metrics: list[str],
    entities: list[str],
    start: str,
    split: datetime,
    step: str,
    batch_rows: int,
) -> Iterator[pa.RecordBatch]:
    for entity in entities:  # one entity's frame at a time bounds the memory
        wide = fs.align(metrics, step, entities=[entity], start=start, end=split)
        yield from wide.to_batches(max_chunksize=batch_rows)


def _cast(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    columns = []
    for field in schema:
        column = batch.column(field.name)
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        columns.append(column.cast(field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


@training_step(
    outputs=("model_file",),
    timeout=3600,
    retries=1,
    backoff=2.0,
    cache=True,
    resources=Resources(cpu=1, memory="2Gi"),
)
def train(
    batches: Path,
    detector: str,
    detector_params: dict[str, Any],
    train_workers: int,
    train_chunk_rows: int,
    model_file: Path,
    registry: ModelRegistry | None = None,
    keep_from: str | None = None,
    refresh: list[str] | None = None,
) -> dict[str, Any]:
    """Learn one state per entity, each from its own history in the stream of batches, and
    the fleet prior that summarises them (see the module's docstring); save the states.

    The stream is cut into chunks of whole entities of about ``train_chunk_rows`` rows; each
    chunk's entities are learnt side by side, the chunks by ``train_workers`` processes at
    once (0: one per CPU this job may use), at most that many chunks in flight, so memory is
    bounded by the chunk size. A series learns the same bits in any chunk, in any process.

    With ``keep_from``, the entities of that version not in ``refresh`` hold its states."""
    from perfml.detectors import create
    from perfml.detectors.series import SeriesStates

    model = create(detector, **detector_params)
    workers = train_workers or len(os.sched_getaffinity(0))
    chunks = _chunks(batches, model.name, max(1, train_chunk_rows))
    first = next(chunks, None)
    if first is None:
        raise TrainingError("the training stream is empty: nothing to learn from")
    following = next(chunks, None)
    rest = itertools.chain([first], [] if following is None else [following], chunks)
    if following is None or workers == 1:  # one chunk: no process would pay for itself
        parts = [_learn(detector, detector_params, chunk) for chunk in rest]
    else:
        parts = _learn_in_pool(detector, detector_params, rest, workers)
    states = SeriesStates.concat([part for part, _ in parts])
    kept = kept_states(registry, keep_from, refresh)
    if kept is not None:
        states = _keep(states, *kept, keep_from or "")
    states.refresh_prior()
    states.prior.columns = states.detector.columns
    digest = states.save(model_file)
    rows = sum(learnt for _, learnt in parts)
    print(f"{model.name} learnt {rows:,} rows of {len(states):,} series; sha256:{digest[:12]}")
    found = {"detector": model.name, "rows": rows, "series": len(states), "sha256": digest}
    if kept is not None:
        print(f"{len(kept[1]):,} series kept from {keep_from}")
        found["kept"] = len(kept[1])
    return found


def kept_states(
    registry: ModelRegistry | None, keep_from: str | None, refresh: list[str] | None
) -> tuple[SeriesStates, list[str]] | None:
    """The states of version ``keep_from`` and its entities to keep: all but ``refresh``
    (None without ``keep_from``)."""
    if keep_from is None:
        return None
    if registry is None:
        raise TrainingError(f"keeping the states of {keep_from} needs the registry")
    from perfml.registry.detector_versions import load_detector

    _, states = load_detector(registry, keep_from)
    fresh = set(refresh or ())
    return states, [entity for entity in states.entities if entity not in fresh]


def _keep(
    states: SeriesStates, source: SeriesStates, entities: list[str], keep_from: str
) -> SeriesStates:
    try:
        return states.keeping(source, entities)
    except ValueError:
        raise KeptStatesMismatchError(
            keep_from, source.detector.name, states.detector.name
        ) from None


Chunk = list[tuple[str, Any, Any, list[str] | None]]
"""Whole entities of the stream: (entity, ts, values, value columns)."""


def _chunks(batches: Path, detector: str, rows: int) -> Iterator[Chunk]:
    from perfml.detectors.frames import as_arrays

    chunk: Chunk = []
    held = 0
    columns: list[str] | None = None
    for entity, frame in _entity_frames(batches):
        ts, values, columns = as_arrays(frame, detector, columns)
        chunk.append((entity, ts, values, columns))
        held += len(ts)
        if held >= rows:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


def _learn(
    detector: str, detector_params: dict[str, Any], chunk: Chunk
) -> tuple[SeriesStates, int]:
    """The states of one chunk's entities, each learnt from its own rows, and the rows."""
    from perfml.detectors import create
    from perfml.detectors.series import SeriesStates

    states = SeriesStates.empty(create(detector, **detector_params))
    states.detector.columns = chunk[0][3]
    rows = states.rows([entity for entity, *_ in chunk], add=True)
    states.fit(
        np.concatenate(
            [np.full(len(ts), row) for row, (_, ts, _, _) in zip(rows, chunk, strict=True)]
        ),
        np.concatenate([ts for _, ts, _, _ in chunk]),
        np.concatenate([values for _, _, values, _ in chunk]),
    )
    return states, sum(len(ts) for _, ts, _, _ in chunk)


def _learn_in_pool(
    detector: str, detector_params: dict[str, Any], chunks: Iterator[Chunk], workers: int
) -> list[tuple[SeriesStates, int]]:
    """:func:`_learn` of every chunk in ``workers`` processes, at most ``workers`` chunks in
    flight; the parts in the stream's order."""
    import concurrent.futures
    import multiprocessing

    # Spawned, not forked: this job's process may run Arrow's threads.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending: list[concurrent.futures.Future[tuple[SeriesStates, int]]] = []
        done: list[tuple[SeriesStates, int]] = []
        for chunk in chunks:
            pending.append(pool.submit(_learn, detector, detector_params, chunk))
            if len(pending) >= workers:
                done.append(pending.pop(0).result())
        done += [future.result() for future in pending]
    return done


def _entity_frames(batches: Path) -> Iterator[tuple[str, pa.Table]]:
    """Each entity's whole history in the stream (``ts`` and value columns), in turn; the
    stream holds each entity's rows together, in time order."""
    current: str | None = None
    pending: list[pa.Table] = []
    with pa.OSFile(str(batches), "rb") as source, pa.ipc.open_stream(source) as reader:
        for batch in reader:
            table = pa.Table.from_batches([batch])
            names = np.asarray(table.column("entity").to_pylist(), dtype=object)
            cuts = np.flatnonzero(names[1:] != names[:-1]) + 1
            for lo, hi in zip([0, *cuts], [*cuts, len(names)], strict=True):
                part = table.slice(int(lo), int(hi - lo)).drop(["entity"])
                entity = str(names[lo])
                if entity != current and pending:
                    yield str(current), pa.concat_tables(pending)
                    pending = []
                current = entity
                pending.append(part)
    if pending:
        yield str(current), pa.concat_tables(pending)


@training_step(
    outputs=("figures", "current"),
    timeout=1800,
    retries=1,
    backoff=2.0,
    resources=Resources(cpu=1, memory="2Gi"),
)
def evaluate(
    model_file: Path,
    store: FeatureStore,
    registry: ModelRegistry,
    metrics: list[str],
    start: str,
    end: str,
    holdout: float,
    step: str,
    validation: float,
    keep_from: str | None,
    refresh: list[str] | None,
    figures: Path,
    current: Path,
) -> dict[str, float]:
    """The promotion gate's figures of the candidate on the held-out ``[split, end)``: its
    threshold chosen on the first ``validation`` share, the figures measured on the rest.
    Then, judged, the candidate learns the held-out rows as the live loop would have
    (``current``), so that the version registered knows the whole window; the entities kept
    from ``keep_from`` keep that version's states."""
    import shutil

    from perfml.detectors.series import load_series
    from perfml.evaluation.labelled_window import GateDataError, LabelledWindowEvaluator

    split, last = split_instant(start, end, holdout), parse_instant(end, "end")
    evaluator = LabelledWindowEvaluator(None, store, split, last, step, validation)
    candidate = load_series(model_file)
    try:
        measured = evaluator.measure(candidate, metrics)
        found, note = measured.figures, measured.note
    except GateDataError as exc:
        found, note = {}, str(exc)
    try:
        learnt = evaluator.learnt(candidate, metrics)
        kept = kept_states(registry, keep_from, refresh)
        if kept is not None:
            learnt = _keep(learnt, *kept, keep_from or "")
        learnt.save(current)
    except GateDataError:  # no point held out: nothing more to learn
        shutil.copyfile(model_file, current)
    document = {
        "figures": found,
        "window": [split.isoformat(), last.isoformat()],
        "validation": [split.isoformat(), evaluator.split.isoformat()],
        "test": [evaluator.split.isoformat(), last.isoformat()],
        "note": note,
    }
    figures.write_text(json.dumps(document, indent=2, sort_keys=True))
    print(json.dumps(document, sort_keys=True))
    return found


@training_step(timeout=600, retries=1, backoff=2.0, resources=Resources(cpu=0.5, memory="1Gi"))
def register(
    model_file: Path,
    current: Path,
    figures: Path,
    store: FeatureStore,
    registry: ModelRegistry,
    model: str,
    metrics: list[str],
    start: str,
    end: str,
    holdout: float,
    step: str,
    promote: bool,
    alias: str,
    gate: list[dict[str, Any]],
    validation: float,
    keep_from: str | None,
    refresh: list[str] | None,
    run_id: str,
) -> dict[str, Any]:
    """Register the version — the candidate once it has learnt the held-out rows too
    (``current``) — with its lineage (the whole window, the metrics, the entities it learnt)
    and the figures it showed on the held-out rows before it learnt them; with ``promote``,
    move ``alias`` through the gate, which judges the candidate as it was then
    (``model_file``) against the holder on the same held-out window. Returns the
    :class:`~perfml.pipelines.outcomes.TrainingOutcome` as JSON. The webhook events of these
    changes are sent when the job's workspace closes (:meth:`perfml.workspace.Workspace.close`).
    """
    from perfml.detectors.series import load_series
    from perfml.evaluation.labelled_window import GateDataError, LabelledWindowEvaluator
    from perfml.registry import MetricThreshold, PromotionRefusedError
    from perfml.registry.detector_versions import register_detector

    split = split_instant(start, end, holdout)
    found = json.loads(figures.read_text())["figures"]
    last = parse_instant(end, "end")
    registered = load_series(current)
    tags, description = {"pipeline": PIPELINE}, ""
    if keep_from is not None:
        fresh = sorted(set(refresh or ()))
        tags |= {"kept_from": keep_from, "refreshed": str(len(fresh))}
        description = (
            f"refreshed the states of {len(fresh)} series ({_names(fresh)}); the other series "
            f"of {keep_from} keep its states"
        )
    version = register_detector(
        registry,
        model,
        registered,
        features=metrics,
        data_start=parse_instant(start, "start"),
        data_end=last,
        pipeline_run=run_id,
        metrics=found,
        tags=tags,
        description=description,
    )
    promoted: str | None = None
    verdict: GateVerdict | None = None
    if promote and alias in registry.get(version.ref).aliases:
        # the same bytes were registered before and already hold the alias
        promoted = alias
        verdict = GateVerdict(passed=True, reason=f"{model}@{alias} holds {version.ref} already")
    elif promote:
        evaluator = LabelledWindowEvaluator(registry, store, split, last, step, validation)
        evaluator.judged[version.ref] = load_series(model_file)  # before the held-out rows
        try:
            done = registry.promote(
                model, version.version, alias, thresholds=MetricThreshold.all_of(gate),
                evaluator=evaluator, reason=f"training run {run_id}",
            )  # fmt: skip
            promoted, verdict = alias, GateVerdict.of(done.gate, notes=evaluator.notes)
        except PromotionRefusedError as refused:  # registered, not promoted: the run succeeds
            verdict = GateVerdict.of(refused.gate, str(refused), notes=evaluator.notes)
        except GateDataError as missing:
            verdict = GateVerdict(passed=False, reason=str(missing), notes=evaluator.notes)
    outcome = TrainingOutcome(
        run_id=run_id, model=model, version=version.version, promoted=promoted, gate=verdict
    )
    print(outcome.summary())
    return outcome.model_dump(mode="json")


def _names(entities: list[str], shown: int = 50) -> str:
    """``a, b, c`` — the first ``shown`` of ``entities``, then how many more."""
    found = ", ".join(entities[:shown])
    return found + (f" and {len(entities) - shown} more" if len(entities) > shown else "")


# -- the pipeline ----------------------------------------------------------------------------

_ARTIFACTS: dict[str, dict[str, Ref | Part]] = {
    "query": {"store": Part("store")},
    "preprocess": {"store": Part("store"), "selection": Ref("query", "selection")},
    "train": {"batches": Ref("preprocess", "batches"), "registry": Part("registry")},
    "evaluate": {
        "store": Part("store"),
        "registry": Part("registry"),
        "model_file": Ref("train", "model_file"),
    },
    "register": {
        "store": Part("store"),
        "registry": Part("registry"),
        "model_file": Ref("train", "model_file"),
        "current": Ref("evaluate", "current"),
        "figures": Ref("evaluate", "figures"),
    },
}
"""Which inputs are parts of the workspace or upstream artifacts; every other input is the run
parameter of its name."""


@pipeline(PIPELINE)
def build_training_pipeline(timeout: float | None = None, retries: int | None = None) -> Pipeline:
    """The training pipeline; ``timeout`` and ``retries`` override every step's own."""
    changes: dict[str, Any] = {}
    if timeout is not None:
        changes["timeout"] = timeout
    if retries is not None:
        changes["retries"] = retries
    tasks = []
    for definition in (query, preprocess, train, evaluate, register):
        refs = _ARTIFACTS[definition.name]
        inputs = {name: refs.get(name, Param(name)) for name in definition.inputs}
        tasks.append(Task(definition.name, replace(definition, **changes), inputs))
    return Pipeline(PIPELINE, tasks, params=DEFAULTS)
