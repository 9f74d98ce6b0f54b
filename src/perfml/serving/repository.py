"""The model repository: the versions the server serves, followed by alias, swapped atomically.

Each served reference (``name@alias``, ``name:version`` or ``name``) holds one immutable
:class:`LoadedModel`. A request takes that object once and uses it from start to end, so a
swap — one attribute assignment — never mixes two versions in one answer. When an alias
moves (a registry event in this process, or polling for moves made elsewhere), the new
version is loaded *beside* the old one and swapped in only once it loaded; a version that
fails to load is never swapped in: the old one keeps serving and ``on_load_failed`` is told.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from perfml.detectors import Detector
from perfml.detectors.series import SeriesStates
from perfml.registry.detector_versions import load_detector
from perfml.registry.events import Event
from perfml.registry.names import Ref, parse_ref
from perfml.registry.records import ModelVersion
from perfml.registry.registry import ModelRegistry
from perfml.serving.errors import ModelNotFoundError, ModelNotReadyError

logger = logging.getLogger(__name__)

Loader = Callable[[ModelRegistry, Ref], tuple[ModelVersion, SeriesStates]]
LoadFailed = Callable[[str, int | None, BaseException], None]
"""``on_load_failed(model, version, error)``; ``version`` is None when it did not resolve."""
Loaded = Callable[[str, int, float], None]
"""``on_loaded(model, version, seconds)``."""


@dataclass(frozen=True)
class LoadedModel:
    """One loaded version: what a request scores with, from start to end."""

    name: str
    ref: str
    version: ModelVersion
    states: SeriesStates
    """One state per series of the version, and the fleet prior."""
    loaded_at: float

    @property
    def detector(self) -> Detector:
        """The fleet prior: what a request that names no series is scored from."""
        return self.states.prior

    @property
    def threshold(self) -> float | None:
        """The anomaly threshold recorded with the version (tag or metric), if any."""
        return self.version.threshold


class ServedModel:
    """One served reference and the version it currently holds."""

    def __init__(self, ref: Ref) -> None:
        self.ref = ref
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self.failed_version: int | None = None  # not retried until the reference moves
        self.lock = threading.Lock()


class ModelRepository:
    """Serve registry references; reload when their alias moves.

    ``poll_interval`` (seconds) is the fallback for moves made by other processes; ``None``
    follows in-process registry events only.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        refs: Sequence[str | Ref],
        *,
        poll_interval: float | None = 10.0,
        on_load_failed: LoadFailed | None = None,
        on_loaded: Loaded | None = None,
        # memory-mapped: serving never learns, so a model of many series stays on disk
        loader: Loader = lambda registry, ref: load_detector(registry, ref, mmap=True),
    ) -> None:
        self.registry = registry
        self.poll_interval = poll_interval
        self.on_load_failed = on_load_failed
        self.on_loaded = on_loaded
        self._loader = loader
        self._served: list[ServedModel] = []
        self._by_name: dict[str, ServedModel] = {}
        for item in refs:
            ref = parse_ref(item) if isinstance(item, str) else item
            served = ServedModel(ref)
            self._served.append(served)
            self._by_name.setdefault(str(ref), served)
        for served in self._served:  # the bare name goes to the first reference of a model
            self._by_name.setdefault(served.ref.model, served)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscribed = False

    # -- lookups (the request path) --------------------------------------------------------

    def names(self) -> list[str]:
        """Every name a client may use, sorted."""
        return sorted(self._by_name)

    def knows(self, name: str) -> bool:
        return name in self._by_name

    def served(self, name: str) -> ServedModel:
        served = self._by_name.get(name)
        if served is None:
            raise ModelNotFoundError(name)
        return served

    def get(self, name: str, version: str | None = None) -> LoadedModel:
        """The loaded model ``name`` serves (and must be ``version`` if one is given)."""
        served = self.served(name)
        current = served.current  # read once: the swap cannot split this request
        if current is None:
            raise ModelNotReadyError(name, served.last_error or "not loaded yet")
        if version is not None and version != str(current.version.version):
            raise ModelNotFoundError(name, version)
        return current

    def current_version(self, name: str) -> str:
        """The version ``name`` serves now, as a label ("" when none)."""
        served = self._by_name.get(name)
        current = None if served is None else served.current
        return "" if current is None else str(current.version.version)

    def ready(self) -> bool:
        """Whether every served reference has a version loaded."""
        return all(s.current is not None for s in self._served)

    # -- loading -----------------------------------------------------------------------------

    def start(self) -> None:
        """Load every reference, follow registry events, and poll in the background."""
        if self._thread is not None:
            return
        if not self._subscribed:
            self.registry.subscribe(self._on_event)
            self._subscribed = True
        self.refresh()
        self._stop.clear()
        self._thread = threading.Thread(target=self._follow, name="perfml-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def refresh(self) -> list[str]:
        """Resolve every reference now and swap in versions that moved; returns what swapped."""
        return [str(s.ref) for s in self._served if self._refresh_one(s)]

    def _refresh_one(self, served: ServedModel) -> bool:
        with served.lock:  # one load at a time per reference; requests never take this lock
            try:
                target = self.registry.resolve(served.ref)
            except Exception as exc:
                self._failed_to_load(served, None, exc)
                return False
            current = served.current
            if current is not None and current.version.version == target.version:
                return False
            if served.failed_version == target.version:
                return False
            started = time.perf_counter()
            try:
                version, detector = self._loader(
                    self.registry, Ref(target.model, version=target.version)
                )
            except Exception as exc:
                served.failed_version = target.version
                self._failed_to_load(served, target.version, exc)
                return False
            seconds = time.perf_counter() - started
            served.current = LoadedModel(
                served.ref.model, str(served.ref), version, detector, time.time()
            )
            served.last_error = None
            served.failed_version = None
        logger.info("serving %s version %d (%.3fs to load)", served.ref, version.version, seconds)
        if self.on_loaded is not None:
            self._call(self.on_loaded, served.ref.model, version.version, seconds)
        return True

    def _failed_to_load(self, served: ServedModel, version: int | None, exc: Exception) -> None:
        served.last_error = f"{type(exc).__name__}: {exc}"
        logger.warning("%s version %s failed to load: %s", served.ref, version, exc)
        if self.on_load_failed is not None:
            self._call(self.on_load_failed, served.ref.model, version, exc)

    @staticmethod
    def _call(hook: Callable[..., None], *args: object) -> None:
        try:
            hook(*args)
        except Exception:
            logger.exception("serving hook %r failed", hook)

    def _on_event(self, event: Event) -> None:
        if event.kind in ("alias_moved", "version_created", "version_deleted") and any(
            s.ref.model == event.model for s in self._served
        ):
            self._wake.set()  # the reload runs on our thread, never on the registry caller's

    def _follow(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.refresh()
            except Exception:
                logger.exception("model refresh failed; retried on the next event or poll")
