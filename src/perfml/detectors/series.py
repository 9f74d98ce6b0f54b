"""One detector state per series: the model of a metric across a fleet.

:class:`SeriesStates` holds, for one detector kind and parameters, a state per entity (host,
VM, service) and a *fleet prior*: the state an entity never seen starts from, so a new host
gets sensible scores from its first point and then its own state. It scores and learns points
of many series in one call over arrays (the entity's row, ts, value):

- :meth:`SeriesStates.learn` / :meth:`SeriesStates.step` score each point against its own
  series as it stands and then learn it, in order per series;
- :meth:`SeriesStates.score` scores without learning, so a point gets the same answer whether
  it comes alone or among others (what serving does).

A detector that declares ``vectorised = True`` (the default ``streaming``) keeps every series
as a row of the same arrays and scores the points of many series in one compiled pass
(:meth:`~perfml.detectors.streaming.StreamingDetector.step_rows`); any other detector keeps
one object per series, scored one by one — the same answers, more slowly.

>>> import numpy as np
>>> from perfml.detectors import create
>>> states = SeriesStates.empty(create("streaming"))
>>> rows = states.rows(["web-1", "web-2"], add=True)
>>> ts = np.arange(400, dtype=np.int64) * 300_000
>>> both = np.repeat(rows, 400), np.tile(ts, 2)
>>> values = np.concatenate([50 + np.sin(np.arange(400) / 9), 10 + np.cos(np.arange(400) / 7)])
>>> _ = states.step(both[0], both[1], values)
>>> unusual = states.score(rows, np.full(2, ts[-1] + 300_000), np.array([50.3, 50.3]))
>>> bool(unusual[1] > 5 * unusual[0])           # 50.3 is normal for web-1, not for web-2
True
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from perfml.detectors import artifact
from perfml.detectors.base import SERIES, Detector, restore
from perfml.detectors.errors import ArtifactError
from perfml.detectors.frames import Floats, Millis
from perfml.plugins import Registry

Rows = npt.NDArray[np.intp]
PRIOR = -1
"""The row of an entity never seen, when it is not added: scored against the fleet prior."""


class SeriesStates:
    """The states of many series of one detector (see the module's docstring)."""

    def __init__(
        self,
        detector: Detector,
        entities: Sequence[str],
        bank: dict[str, npt.NDArray[Any]] | list[Detector],
        prior: Detector,
    ) -> None:
        self.detector = detector
        """The kind, parameters and value columns; its own state is not used."""
        self.entities = list(entities)
        self._index = {entity: row for row, entity in enumerate(self.entities)}
        self.bank = bank
        self.prior = prior
        """The fleet prior, as a detector of its own."""

    @classmethod
    def empty(cls, detector: Detector) -> SeriesStates:
        """No series yet; the prior is ``detector`` as it stands."""
        if vectorised(detector):
            bank: dict[str, npt.NDArray[Any]] | list[Detector] = detector.new_bank(0)  # type: ignore[attr-defined]
        else:
            bank = []
        return cls(detector, [], bank, detector.copy())

    @classmethod
    def concat(cls, parts: Sequence[SeriesStates]) -> SeriesStates:
        """The series of every part (of one detector kind and parameters, no entity in two),
        in order; the first part's prior (refresh it to summarise them all)."""
        if not parts:
            raise ValueError("no states to concatenate")
        entities = [entity for part in parts for entity in part.entities]
        if len(set(entities)) != len(entities):
            raise ValueError("an entity is in more than one of the states to concatenate")
        first = parts[0]
        bank: dict[str, npt.NDArray[Any]] | list[Detector]
        if isinstance(first.bank, dict):
            banks = [part.bank for part in parts if isinstance(part.bank, dict)]
            bank = {
                name: np.concatenate([np.asarray(b[name]) for b in banks]) for name in first.bank
            }
        else:
            bank = [model for part in parts if isinstance(part.bank, list) for model in part.bank]
        count = len(bank) if isinstance(bank, list) else len(next(iter(bank.values())))
        if count != len(entities):
            raise ValueError("the states to concatenate are not all of one detector kind")
        return cls(first.detector, entities, bank, first.prior)

    def __len__(self) -> int:
        return len(self.entities)

    def __contains__(self, entity: object) -> bool:
        return entity in self._index

    # -- rows -----------------------------------------------------------------------------

    def rows(self, entities: Iterable[str], add: bool = False) -> Rows:
        """The row of each entity; one never seen is added (from the prior) with ``add``, or
        is :data:`PRIOR`."""
        names = list(entities)
        unique = dict.fromkeys(names)
        if add:
            self.add([entity for entity in unique if entity not in self._index])
        index = self._index
        return np.fromiter((index.get(e, PRIOR) for e in names), np.intp, len(names))

    def add(self, entities: Sequence[str]) -> None:
        """New series, each starting from the prior."""
        fresh = [entity for entity in dict.fromkeys(entities) if entity not in self._index]
        if not fresh:
            return
        for entity in fresh:
            self._index[entity] = len(self.entities)
            self.entities.append(entity)
        if isinstance(self.bank, dict):
            prior = self.prior.bank  # type: ignore[attr-defined]
            grown = {}
            for name, array in self.bank.items():  # new arrays: a mapped bank stays as it is
                held = len(array)
                grown[name] = np.empty((held + len(fresh), *array.shape[1:]), array.dtype)
                grown[name][:held] = array
                grown[name][held:] = prior[name]  # the prior's row, broadcast
            self.bank = grown
        else:
            self.bank.extend(self.prior.copy() for _ in fresh)

    # -- scoring --------------------------------------------------------------------------

    def score(self, rows: Rows, ts: Millis, values: Floats) -> Floats:
        """Each point scored against its series' state as it stands (the prior's for
        :data:`PRIOR`); nothing is learnt."""
        rows = np.asarray(rows, np.intp)
        out = np.zeros(len(rows))
        known = rows != PRIOR
        if isinstance(self.bank, dict):
            step = self.detector.step_rows  # type: ignore[attr-defined]
            if known.any():
                out[known] = step(self.bank, rows[known], ts[known], values[known], False)
            if (~known).any():
                zeros = np.zeros(int((~known).sum()), np.intp)
                prior = self.prior.bank  # type: ignore[attr-defined]
                out[~known] = step(prior, zeros, ts[~known], values[~known], False)
            return out
        for i, row in enumerate(rows.tolist()):
            model = self.prior if row == PRIOR else self.bank[row]
            out[i] = model.score_values(ts[i : i + 1], values[i : i + 1])[0]
        return out

    def step(self, rows: Rows, ts: Millis, values: Floats) -> Floats:
        """Score each point, then learn it, in the order given within each series (the
        series' points must not go back in time). Every row must be a series' (not PRIOR)."""
        rows = np.asarray(rows, np.intp)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self.entities)):
            raise IndexError(f"rows must be of the {len(self.entities)} series")
        out = np.zeros(len(rows))
        if isinstance(self.bank, dict):
            self._writable()
            step = self.detector.step_rows  # type: ignore[attr-defined]
            return np.asarray(step(self.bank, rows, ts, values, True), np.float64)
        order = np.argsort(rows, kind="stable")
        cuts = np.flatnonzero(np.diff(rows[order])) + 1
        for part in np.split(order, cuts) if len(order) else []:
            model = self.bank[int(rows[part[0]])]
            out[part] = model.score_arrays(ts[part], values[part])
        return out

    def fit(self, rows: Rows, ts: Millis, values: Floats) -> None:
        """Learn each series of ``rows`` from scratch from its points (a detector fitted in
        batch, such as ``iforest``, is fitted on each series' points)."""
        rows = np.asarray(rows, np.intp)
        fresh = type(self.detector)(**self.detector.params.model_dump())
        fresh.columns = self.detector.columns
        if isinstance(self.bank, dict):
            self._writable()
            blank = fresh.new_bank(1)  # type: ignore[attr-defined]
            for name, array in self.bank.items():
                array[np.unique(rows)] = blank[name]
            self.step(rows, ts, values)
            return
        order = np.argsort(rows, kind="stable")
        cuts = np.flatnonzero(np.diff(rows[order])) + 1
        columns = self.detector.columns or ["value"]
        for part in np.split(order, cuts) if len(order) else []:
            model = fresh.copy()
            block = values[part].reshape(len(part), -1)
            frame = pa.table(
                {
                    "ts": pa.array(ts[part], pa.int64()),
                    **{c: pa.array(block[:, i]) for i, c in enumerate(columns)},
                }
            )
            self.bank[int(rows[part[0]])] = model.fit(frame)

    def replay(
        self, entities: Sequence[str], series: Sequence[tuple[Millis, Floats]]
    ) -> list[Floats]:
        """The scores of each entity's points as they would come live: from its own state
        (the prior's for an entity never seen), learning each point before the next, all
        entities in one pass; these states are left unchanged."""
        trial = self.subset(entities)
        rows = trial.rows(entities)
        every = np.concatenate(
            [np.full(len(ts), row) for row, (ts, _) in zip(rows, series, strict=True)]
        )
        scores = trial.step(
            every.astype(np.intp),
            np.concatenate([np.asarray(ts, np.int64) for ts, _ in series]),
            np.concatenate([np.asarray(values, np.float64) for _, values in series]),
        )
        out, at = [], 0
        for ts, _ in series:
            out.append(scores[at : at + len(ts)])
            at += len(ts)
        return out

    def subset(self, entities: Iterable[str]) -> SeriesStates:
        """Independent copies of the states of ``entities`` (the prior's for one never seen)
        and of the prior."""
        names = list(dict.fromkeys(entities))
        rows = self.rows(names)
        known = rows != PRIOR
        bank: dict[str, npt.NDArray[Any]] | list[Detector]
        if isinstance(self.bank, dict):
            prior = self.prior.bank  # type: ignore[attr-defined]
            bank = {}
            for name, array in self.bank.items():
                taken = np.repeat(prior[name], len(names), axis=0)
                taken[known] = np.asarray(array)[rows[known]]
                bank[name] = taken
        else:
            bank = [self.prior.copy() if row == PRIOR else self.bank[row].copy() for row in rows]
        return SeriesStates(self.detector, names, bank, self.prior.copy())

    def keeping(self, other: SeriesStates, entities: Iterable[str]) -> SeriesStates:
        """Independent copies of these states, except that each of ``entities`` ``other``
        holds has ``other``'s state, byte for byte (added after these series if it is not one
        of them); the prior is this one's. Both must be of one detector kind and parameters.
        """
        mine, theirs = self.detector, other.detector
        if (theirs.name, theirs.params) != (mine.name, mine.params):
            raise ValueError(
                f"cannot keep states of {theirs.name} in states of {mine.name}"
                " with other parameters"
            )
        kept = [entity for entity in dict.fromkeys(entities) if entity in other]
        taken = set(kept)
        order = self.entities + [entity for entity in kept if entity not in self]
        merged = SeriesStates.concat(
            [self.subset([e for e in self.entities if e not in taken]), other.subset(kept)]
        )
        found = merged.subset(order)
        found.detector = self.detector
        found.prior = self.prior.copy()
        return found

    def _writable(self) -> None:
        if isinstance(self.bank, dict) and any(
            not array.flags.writeable or isinstance(array, np.memmap)
            for array in self.bank.values()
        ):
            self.bank = {name: np.array(array) for name, array in self.bank.items()}

    def learn(self, rows: Rows, ts: Millis, values: Floats) -> None:
        """:meth:`step`, scores dropped."""
        self.step(rows, ts, values)

    # -- one series as a detector ------------------------------------------------------------

    def series(self, entity: str) -> Detector:
        """A detector in the state of ``entity`` (the prior's if it was never seen)."""
        row = self._index.get(entity)
        if row is None:
            return self.prior.copy()
        if isinstance(self.bank, dict):
            model = self.detector.copy()
            model.bank = {name: np.array(a[row : row + 1]) for name, a in self.bank.items()}  # type: ignore[attr-defined]
            return model
        return self.bank[row].copy()

    def refresh_prior(self) -> None:
        """Make the prior summarise every series learnt so far."""
        if isinstance(self.bank, dict):
            prior = self.detector.copy()
            prior.bank = self.detector.prior(self.bank)  # type: ignore[attr-defined]
            self.prior = prior
        elif self.bank:
            # A detector without a vectorised form has no merge: the last series learnt.
            self.prior = copy.deepcopy(self.bank[-1])

    # -- saved form ---------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write every series' state, the prior and the entities (the safe form of
        :mod:`.artifact`: JSON and plain arrays, a vectorised bank as one array per field,
        large ones uncompressed so that :func:`load_series` can memory-map them); returns
        the file's SHA-256."""
        prior_meta, prior_arrays = self.prior.get_state()
        arrays = {f"prior_{name}": array for name, array in prior_arrays.items()}
        encoded = [entity.encode() for entity in self.entities]
        arrays["entity_bytes"] = np.frombuffer(b"".join(encoded), np.uint8)
        arrays["entity_ends"] = np.cumsum([len(e) for e in encoded], dtype=np.int64)
        series: dict[str, Any] = {"count": len(self), "prior": prior_meta}
        if isinstance(self.bank, dict):
            series["vectorised"] = True
            arrays |= {f"bank_{name}": np.asarray(array) for name, array in self.bank.items()}
        else:
            series["vectorised"] = False
            series["meta"] = []
            for row, model in enumerate(self.bank):
                meta, own = model.get_state()
                series["meta"].append(meta)
                arrays |= {f"s{row}_{name}": array for name, array in own.items()}
        meta = {"columns": self.detector.columns, SERIES: series}
        params = self.detector.params.model_dump(mode="json")
        kind = self.detector.name
        return artifact.write(path, kind, self.detector.state_version, params, meta, arrays)

    def state_bytes(self) -> int:
        """Bytes of state per series (of a vectorised bank; else of the prior's arrays)."""
        if isinstance(self.bank, dict):
            per_row = self.detector.new_bank(1)  # type: ignore[attr-defined]
            return sum(array.nbytes for array in per_row.values())
        _, arrays = self.prior.get_state()
        return sum(array.nbytes for array in arrays.values())


def load_series(
    path: str | os.PathLike[str],
    registry: Registry[type[Detector]] | None = None,
    mmap: bool = False,
    verified: bool = False,
) -> SeriesStates:
    """States saved with :meth:`SeriesStates.save`, verified (``verified``: the caller has
    checked the file's digest already); a file of one detector (:meth:`Detector.save`) reads
    as no series and that detector as the prior. With ``mmap``, a large bank is memory-mapped
    copy-on-write, its pages read as they are scored (:meth:`SeriesStates.add` and learning
    copy it first)."""
    saved = artifact.read(path, mmap=mmap, verified=verified)
    columns = saved.meta.get("columns")
    if SERIES not in saved.meta:
        prior = restore(path, saved, saved.meta, saved.arrays, registry)
        states = SeriesStates.empty(prior)
        states.detector.columns = prior.columns
        return states
    series = saved.meta[SERIES]
    try:
        count = int(series["count"])
        ends = saved.arrays["entity_ends"]
        raw = saved.arrays["entity_bytes"].tobytes()
        starts = np.r_[0, ends[:-1]] if len(ends) else np.zeros(0, np.int64)
        entities = [raw[a:b].decode() for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
        prior_arrays = {k[6:]: v for k, v in saved.arrays.items() if k.startswith("prior_")}
        prior = restore(path, saved, {"columns": columns, **series["prior"]}, prior_arrays,
                        registry)  # fmt: skip
        detector = prior.copy()
        bank: dict[str, npt.NDArray[Any]] | list[Detector]
        if series["vectorised"]:
            bank = {k[5:]: v for k, v in saved.arrays.items() if k.startswith("bank_")}
            expected = detector.new_bank(1)  # type: ignore[attr-defined]
            for name, array in expected.items():
                found = bank.get(name)
                if found is None or found.shape[1:] != array.shape[1:] or len(found) != count:
                    raise ValueError(f"bank array {name!r} missing or of the wrong shape")
        else:
            bank = []
            for row in range(count):
                prefix = f"s{row}_"
                own = {k[len(prefix) :]: v for k, v in saved.arrays.items() if k.startswith(prefix)}
                meta = {"columns": columns, **series["meta"][row]}
                bank.append(restore(path, saved, meta, own, registry))
    except (KeyError, TypeError, ValueError, UnicodeDecodeError, IndexError) as exc:
        raise ArtifactError(path, f"the saved series are inconsistent ({exc})") from None
    if len(entities) != count or len(set(entities)) != count:
        raise ArtifactError(path, f"lists {len(entities)} entities for {count} series")
    return SeriesStates(detector, entities, bank, prior)


def vectorised(detector: Detector) -> bool:
    """Whether ``detector`` keeps many series as rows of the same arrays."""
    return bool(getattr(type(detector), "vectorised", False))


def fit_series(
    detector: Detector, entities: Sequence[str], frames: Iterable[tuple[Millis, Floats]]
) -> SeriesStates:
    """States learnt by ``detector``'s kind for each entity from its own ``(ts, values)``,
    all entities side by side, and the fleet prior that merges them."""
    states = SeriesStates.empty(type(detector)(**detector.params.model_dump()))
    states.detector.columns = detector.columns
    parts = list(frames)
    rows = states.rows(entities, add=True)
    states.fit(
        np.concatenate([np.full(len(ts), row) for row, (ts, _) in zip(rows, parts, strict=True)]),
        np.concatenate([np.asarray(ts, np.int64) for ts, _ in parts]),
        np.concatenate([np.asarray(values, np.float64) for _, values in parts]),
    )
    states.refresh_prior()
    return states
