"""One interface for every anomaly detector, and the registry that names them.

A detector learns what normal looks like and scores how anomalous each new point is, in
``[0, 1]``. Its life:

- ``fit(history)`` learns from a frame (``ts`` and value columns) and returns the detector;
- ``score(frame)`` scores every row of a frame as if the rows arrived one by one after what
  the detector has seen, without changing the detector — so scoring is repeatable;
- ``update(ts, value)`` scores one new point and learns from it: the online path of serving;
- ``save(path)`` / :func:`load` store it in the safe format of :mod:`.artifact`.

Scoring is causal: the score of a row depends on that row and the rows before it only. For
every detector ``score(frame)`` equals calling ``update`` row by row on a copy; the
conformance suite in the tests holds every registered detector to this, to the range, to
determinism and to an exact save/load round trip.

A new detector subclasses :class:`Detector`, declares its ``Params`` (a pydantic model) and
registers itself with :func:`register`::

    @register
    class MyDetector(Detector):
        name = "mine"
        class Params(DetectorParams):
            alpha: float = 0.1
        ...
"""

from __future__ import annotations

import copy
import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, ValidationError

from perfml.detectors import artifact
from perfml.detectors.errors import (
    ArtifactError,
    BadParamsError,
    DetectorNameTakenError,
    UnknownDetectorError,
)
from perfml.detectors.frames import Floats, Frame, Millis, as_arrays
from perfml.plugins import Registry

State = tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]
"""A detector's state: JSON-able metadata and named numeric arrays."""


class DetectorParams(BaseModel):
    """Hyperparameters: validated, immutable, unknown names refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Detector(ABC):
    """The base of every detector (see the module's docstring)."""

    name: ClassVar[str]
    """The name the registry knows it by."""
    Params: ClassVar[type[DetectorParams]] = DetectorParams
    state_version: ClassVar[int] = 1
    """Bumped when the saved state changes shape; older versions are refused on load."""
    multivariate: ClassVar[bool] = False
    """Whether it scores several value columns together (else exactly one)."""
    max_state_bytes: ClassVar[int | None] = None
    """The most bytes of state one series may take, whatever it has seen (None: unstated)."""
    default_threshold: ClassVar[float | None] = None
    """The score to alarm at before labels have chosen one: the detector's scores are on one
    scale for every series, and this is the threshold NAB's sweep chose over a labelled corpus
    of many kinds of series (None: the detector states none)."""

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params(**params)
        except ValidationError as exc:
            raise BadParamsError(self.name, _problems(exc)) from None
        self.columns: list[str] | None = None
        self.reset()

    # -- what a detector implements ------------------------------------------------------

    @abstractmethod
    def reset(self) -> None:
        """Forget everything learnt."""

    @abstractmethod
    def update(self, ts: int, value: float | Floats) -> float:
        """Score one point (``ts`` in epoch ms) in ``[0, 1]``, then learn from it."""

    @abstractmethod
    def get_state(self) -> State:
        """What :meth:`set_state` needs to restore this detector exactly."""

    @abstractmethod
    def set_state(self, meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> None:
        """Restore a state that :meth:`get_state` returned."""

    # -- what a detector may override for speed -------------------------------------------

    def learn(self, ts: Millis, values: Floats) -> None:
        """Learn from rows in order; by default by streaming them through :meth:`update`."""
        for t, v in zip(ts.tolist(), values, strict=True):
            self.update(t, v)

    def score_arrays(self, ts: Millis, values: Floats) -> Floats:
        """Scores of rows in order, learning as :meth:`update` does (mutates ``self``)."""
        out = np.empty(len(ts))
        for i, (t, v) in enumerate(zip(ts.tolist(), values, strict=True)):
            out[i] = self.update(t, v)
        return out

    # -- the interface -------------------------------------------------------------------

    def fit(self, history: Frame) -> Self:
        """Learn from ``history`` (from scratch) and return the detector."""
        self.reset()
        ts, values, self.columns = as_arrays(history, self.name)
        self.learn(ts, values)
        return self

    def score(self, frame: Frame) -> Floats:
        """Scores in ``[0, 1]`` for every row of ``frame``; the detector is left unchanged."""
        ts, values, _ = as_arrays(frame, self.name, self.columns)
        return self.score_values(ts, values)

    def score_values(self, ts: Millis, values: Floats) -> Floats:
        """:meth:`score` of rows given as arrays (as :func:`as_arrays` makes them): scores
        each row learning the ones before it, on a :meth:`copy`, so ``self`` is unchanged.

        Override it (not :meth:`score`) to score faster; the server calls it directly.
        """
        return self.copy().score_arrays(ts, values)

    def copy(self) -> Self:
        """An independent detector in the same state."""
        return copy.deepcopy(self)

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the detector to ``path``; returns the file's SHA-256."""
        meta, arrays = self.get_state()
        meta = {**meta, "columns": self.columns}
        params = self.params.model_dump(mode="json")
        return artifact.write(path, self.name, self.state_version, params, meta, arrays)


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"parameter {'.'.join(str(p) for p in e['loc'])} = {e.get('input')!r}: {e['msg']}"
        if e["type"] != "extra_forbidden"
        else f"unknown parameter {'.'.join(str(p) for p in e['loc'])}"
        for e in exc.errors()
    )


DETECTORS: Registry[type[Detector]] = Registry(
    "detector",
    unknown=UnknownDetectorError,
    taken=DetectorNameTakenError,
    builtins="perfml.detectors.builtin",
)
"""The default registry: perfml's built-in detectors, and any a plugin registers on import."""
D = TypeVar("D", bound=type[Detector])


def register(cls: D) -> D:
    """Class decorator: make a detector available by its ``name`` in :data:`DETECTORS`."""
    return DETECTORS.register(cls)


def available(registry: Registry[type[Detector]] | None = None) -> list[str]:
    """The names of every registered detector."""
    return sorted((registry or DETECTORS).names())


def create(name: str, registry: Registry[type[Detector]] | None = None, **params: Any) -> Detector:
    """A new detector of kind ``name`` with ``params``."""
    return (registry or DETECTORS).get(name)(**params)


RETIRED: dict[str, str] = {"seasonal": "streaming"}
"""Kinds perfml no longer ships, each with the built-in kind to retrain such a model with.

``seasonal`` (median and MAD per hour-of-week slot) never scored above 5 on NAB, and a redesign
of it (robust level and hour-of-day and hour-of-week offsets, calibrated tail probabilities of
its residuals) stayed near 50 (47 cross-validated) on the 51 files, as ``streaming`` — whose
memories include the time of day — scores 70.6 (69.0).
"""

SERIES = "series"
"""The key of a saved file's metadata that marks the states of many series."""


def load(
    path: str | os.PathLike[str], registry: Registry[type[Detector]] | None = None
) -> Detector:
    """A detector saved with :meth:`Detector.save`, verified (see :mod:`.artifact`)."""
    saved = artifact.read(path)
    if SERIES in saved.meta:
        raise ArtifactError(
            path,
            f"holds the states of {saved.meta[SERIES].get('count', '?')} series, not one "
            "detector (read it with perfml.detectors.series.load_series)",
        )
    return restore(path, saved, saved.meta, saved.arrays, registry)


def restore(
    path: str | os.PathLike[str],
    saved: artifact.Saved,
    meta: dict[str, Any],
    arrays: dict[str, npt.NDArray[Any]],
    registry: Registry[type[Detector]] | None = None,
) -> Detector:
    """A detector of ``saved``'s kind and parameters in the state ``meta`` and ``arrays``."""
    chosen = registry or DETECTORS
    if saved.kind not in chosen:
        problem = f"detector kind {saved.kind!r} is not known to this perfml"
        if saved.kind in RETIRED:
            problem += f" (it was removed: retrain the model with {RETIRED[saved.kind]!r})"
        raise ArtifactError(path, problem)
    cls = chosen.get(saved.kind)
    if saved.state_version != cls.state_version:
        raise ArtifactError(
            path,
            f"{saved.kind} state version {saved.state_version}; this perfml "
            f"reads {cls.state_version} (saved by perfml {saved.perfml_version})",
        )
    try:
        detector = cls(**saved.params)
    except BadParamsError as exc:
        raise ArtifactError(path, f"saved parameters are invalid ({exc})") from None
    meta = dict(meta)
    detector.columns = meta.pop("columns", None)
    try:
        detector.set_state(meta, arrays)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise ArtifactError(
            path, f"saved state does not fit a {saved.kind} detector ({exc})"
        ) from None
    return detector
