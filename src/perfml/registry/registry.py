"""The model registry: versions, aliases, promotion through the gate, rollback, events.

>>> import tempfile, pathlib
>>> from perfml.registry.artifacts import FilesystemArtifactStore
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> registry = ModelRegistry(f"sqlite:///{root}/registry.db", FilesystemArtifactStore(root / "a"))
>>> model_file = root / "model.bin"
>>> _ = model_file.write_bytes(b"weights")
>>> registry.register("cpu", model_file, detector="seasonal").version
1
>>> registry.set_alias("cpu", "staging", 1, reason="first").to_version
1
>>> registry.resolve("cpu@staging").digest[:12]
'9a129038d9a0'
"""

from __future__ import annotations

import getpass
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from perfml import __version__
from perfml.registry import db, events
from perfml.registry.artifacts import ArtifactStore, sha256_of
from perfml.registry.errors import NotFoundError, RegistryError
from perfml.registry.gate import GateResult, MetricThreshold, check
from perfml.registry.names import Ref, check_name, parse_ref
from perfml.registry.records import AliasMove, Model, ModelVersion, instant

logger = logging.getLogger(__name__)

Evaluator = Callable[[ModelVersion], Mapping[str, float]]
"""Figures of one version on the gate's labelled window (the same window for every call)."""


# The lookups serving makes on every reload, built once: only their parameters change.
_VERSION_OF_MODEL = (
    select(db.versions)
    .join(db.models, db.models.c.id == db.versions.c.model_id)
    .where(db.models.c.name == bindparam("model"))
)
_BY_ALIAS = _VERSION_OF_MODEL.join(
    db.aliases,
    (db.aliases.c.model_id == db.versions.c.model_id)
    & (db.aliases.c.version == db.versions.c.version),
).where(db.aliases.c.alias == bindparam("alias"))
_BY_NUMBER = _VERSION_OF_MODEL.where(db.versions.c.version == bindparam("version"))
_LATEST = _VERSION_OF_MODEL.order_by(db.versions.c.version.desc()).limit(1)
_HOLDERS = select(db.aliases.c.alias).where(
    db.aliases.c.model_id == bindparam("model_id"),
    db.aliases.c.version == bindparam("version"),
)


class PromotionRefusedError(RegistryError):
    """The candidate did not clear the gate; the message lists every failed threshold."""

    def __init__(self, target: str, candidate: int, gate: GateResult) -> None:
        self.gate = gate
        super().__init__(
            f"promotion of version {candidate} to {target} refused: " + "; ".join(gate.failures)
        )


class ConcurrentChangeError(RegistryError):
    """The alias moved between reading it and moving it: another change won the race."""

    def __init__(self, target: str, seen: int | None, now: int | None) -> None:
        super().__init__(
            f"{target} moved from version {seen} to {now} while this change was being "
            "decided; nothing was changed — decide again against the new holder"
        )


class AliasHeldError(RegistryError):
    def __init__(self, ref: str, holders: Sequence[str]) -> None:
        super().__init__(f"{ref} is held by alias(es) {', '.join(holders)}; move them first")


class NothingToRollBackError(RegistryError):
    def __init__(self, target: str) -> None:
        super().__init__(f"{target} has no previous holder to roll back to")


@dataclass(frozen=True)
class Promotion:
    """What a promotion did: the audit entry and the gate's verdict (None when skipped)."""

    move: AliasMove
    gate: GateResult | None


class ModelRegistry:
    """Models and their versions in a SQL database, artifacts in an :class:`ArtifactStore`."""

    def __init__(
        self,
        url: str,
        artifacts: ArtifactStore,
        actor: str | None = None,
        cache_dir: Path | None = None,
        deliver_in_background: bool = True,
    ) -> None:
        self.url = url
        self.engine = db.connect(url)
        self._writer = self.engine.execution_options(**db.WRITE)
        self.artifacts = artifacts
        self.actor = actor or _default_actor()
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "perfml-artifact-cache"
        self._subscribers: list[events.Subscriber] = []
        self._deliver_in_background = deliver_in_background
        self._delivery_lock = threading.Lock()

    def close(self) -> None:
        """Close the database connections."""
        self.engine.dispose()

    def __enter__(self) -> ModelRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- models --------------------------------------------------------------------------

    def create_model(
        self, name: str, description: str = "", tags: Mapping[str, str] | None = None
    ) -> Model:
        """The model ``name``, created if it does not exist yet."""
        check_name("model", name)
        with self._writer.begin() as con:
            self._model_id(con, name, create=True, description=description, tags=tags)
        return self.model(name)

    def models(self) -> list[Model]:
        with self.engine.connect() as con:
            names = con.execute(select(db.models.c.name).order_by(db.models.c.name)).scalars()
            return [self._model(con, n) for n in names.all()]

    def model(self, name: str) -> Model:
        with self.engine.connect() as con:
            return self._model(con, check_name("model", name))

    def _model(self, con: Connection, name: str) -> Model:
        row = con.execute(select(db.models).where(db.models.c.name == name)).first()
        if row is None:
            raise NotFoundError("model", name)
        latest = con.execute(
            select(func.max(db.versions.c.version)).where(db.versions.c.model_id == row.id)
        ).scalar()
        held = con.execute(
            select(db.aliases.c.alias, db.aliases.c.version).where(db.aliases.c.model_id == row.id)
        ).all()
        return Model(
            name=row.name,
            description=row.description,
            tags=dict(row.tags),
            created_at=instant(row.created_at),  # type: ignore[arg-type]
            latest_version=latest,
            aliases={str(alias): int(version) for alias, version in held},
        )

    def _model_id(
        self,
        con: Connection,
        name: str,
        create: bool = False,
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> int:
        found = con.execute(select(db.models.c.id).where(db.models.c.name == name)).scalar()
        if found is not None:
            return int(found)
        if not create:
            raise NotFoundError("model", name)
        for key in tags or {}:
            check_name("tag", key)
        inserted = con.execute(
            db.models.insert().values(
                name=name, description=description, tags=dict(tags or {}), created_at=time.time()
            )
        )
        return _new_id(inserted)

    # -- versions ------------------------------------------------------------------------

    def register(
        self,
        model: str,
        artifact: Path,
        *,
        detector: str,
        params: Mapping[str, Any] | None = None,
        data_start: datetime | None = None,
        data_end: datetime | None = None,
        features: Sequence[str] = (),
        pipeline_run: str | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
    ) -> ModelVersion:
        """Store ``artifact`` and record a new version of ``model`` (created if needed).

        The artifact is stored first, content-addressed, then the version row is inserted in
        one transaction: a process that dies in between leaves at most an unreferenced blob,
        never a version without its artifact. The same bytes registered again for the same
        model return the existing version.
        """
        check_name("model", model)
        for key in tags or {}:
            check_name("tag", key)
        digest = sha256_of(artifact)
        uri = self.artifacts.put(artifact, digest, model)
        size = artifact.stat().st_size
        for attempt in range(5):
            try:
                with self._writer.begin() as con:
                    model_id = self._model_id(con, model, create=True)
                    existing = con.execute(
                        select(db.versions.c.version).where(
                            db.versions.c.model_id == model_id, db.versions.c.digest == digest
                        )
                    ).scalar()
                    if existing is not None:
                        return self.get(Ref(model, version=int(existing)))
                    number = 1 + (
                        con.execute(
                            select(func.max(db.versions.c.version)).where(
                                db.versions.c.model_id == model_id
                            )
                        ).scalar()
                        or 0
                    )
                    now = time.time()
                    con.execute(
                        db.versions.insert().values(
                            model_id=model_id,
                            version=number,
                            digest=digest,
                            artifact_uri=uri,
                            size_bytes=size,
                            detector=detector,
                            params=dict(params or {}),
                            data_start=None if data_start is None else data_start.timestamp(),
                            data_end=None if data_end is None else data_end.timestamp(),
                            features=list(features),
                            pipeline_run=pipeline_run,
                            metrics={k: float(v) for k, v in (metrics or {}).items()},
                            perfml_version=__version__,
                            tags=dict(tags or {}),
                            description=description,
                            created_at=now,
                        )
                    )
                    event = events.Event(
                        "version_created",
                        model,
                        now,
                        {"version": number, "digest": digest, "detector": detector},
                    )
                    events.enqueue(con, event)
                break
            except (IntegrityError, OperationalError):
                if attempt == 4:
                    raise
                time.sleep(0.01 * (attempt + 1))
        self._announce(event)
        return self.get(Ref(model, version=number))

    def get(self, ref: str | Ref) -> ModelVersion:
        """One version: ``name:7``, ``name@alias``, or ``name`` for the latest.

        An alias or a number is found with one joined query (serving resolves on every
        reload); only a miss takes the slower path that says what is missing.
        """
        ref = parse_ref(ref) if isinstance(ref, str) else ref
        params: dict[str, str | int]
        if ref.alias is not None:
            query, params = _BY_ALIAS, {"model": ref.model, "alias": ref.alias}
        elif ref.version is not None:
            query, params = _BY_NUMBER, {"model": ref.model, "version": ref.version}
        else:
            query, params = _LATEST, {"model": ref.model}
        with self.engine.connect() as con:
            row = con.execute(query, params).first()
            if row is None:
                model_id = self._model_id(con, ref.model)  # raises if the model is missing
                self._version_number(con, model_id, ref)  # raises if the alias is missing
                raise NotFoundError("version", str(ref))
            holders = con.execute(
                _HOLDERS, {"model_id": row.model_id, "version": row.version}
            ).scalars()
            return _version(ref.model, row, tuple(sorted(holders.all())))

    resolve = get
    """The version serving should load for a reference (alias, number, or latest)."""

    def _version_number(self, con: Connection, model_id: int, ref: Ref) -> int:
        if ref.version is not None:
            return ref.version
        if ref.alias is not None:
            number = con.execute(
                select(db.aliases.c.version).where(
                    db.aliases.c.model_id == model_id, db.aliases.c.alias == ref.alias
                )
            ).scalar()
            if number is None:
                raise NotFoundError("alias", str(ref), "set it with promote or set-alias")
            return int(number)
        latest = con.execute(
            select(func.max(db.versions.c.version)).where(db.versions.c.model_id == model_id)
        ).scalar()
        if latest is None:
            raise NotFoundError("version", str(ref), "the model has no versions")
        return int(latest)

    def versions(self, model: str) -> list[ModelVersion]:
        with self.engine.connect() as con:
            model_id = self._model_id(con, check_name("model", model))
            held: dict[int, list[str]] = {}
            for alias, number in con.execute(
                select(db.aliases.c.alias, db.aliases.c.version).where(
                    db.aliases.c.model_id == model_id
                )
            ):
                held.setdefault(number, []).append(alias)
            rows = con.execute(
                select(db.versions)
                .where(db.versions.c.model_id == model_id)
                .order_by(db.versions.c.version)
            ).all()
            return [_version(model, r, tuple(sorted(held.get(r.version, [])))) for r in rows]

    def fetch(self, ref: str | Ref, dest: Path | None = None) -> Path:
        """The version's artifact as a local file, its digest verified."""
        version = self.get(ref)
        target = dest or self.cache_dir / version.digest
        return self.artifacts.fetch(version.artifact_uri, version.digest, target)

    def set_tag(self, ref: str, key: str, value: str) -> None:
        """Tag a version (``name:7``) or, given a bare name, the model."""
        self._tag(ref, check_name("tag", key), value)

    def delete_tag(self, ref: str, key: str) -> None:
        self._tag(ref, key, None)

    def _tag(self, text: str, key: str, value: str | None) -> None:
        ref = parse_ref(text)
        with self._writer.begin() as con:
            model_id = self._model_id(con, ref.model)
            if ref.version is None and ref.alias is None:
                table, where = db.models, db.models.c.id == model_id
            else:
                number = self._version_number(con, model_id, ref)
                table = db.versions
                where = and_(db.versions.c.model_id == model_id, db.versions.c.version == number)
            current = con.execute(select(table.c.tags).where(where)).scalar_one()
            tags = {k: v for k, v in current.items() if k != key}
            if value is not None:
                tags[key] = value
            con.execute(update(table).where(where).values(tags=tags))

    def delete_version(self, ref: str | Ref) -> ModelVersion:
        """Delete a version and its artifact, unless an alias holds it."""
        version = self.get(ref)
        if version.aliases:
            raise AliasHeldError(version.ref, [f"{version.model}@{a}" for a in version.aliases])
        with self._writer.begin() as con:
            model_id = self._model_id(con, version.model)
            held = (
                con.execute(
                    select(db.aliases.c.alias).where(
                        db.aliases.c.model_id == model_id, db.aliases.c.version == version.version
                    )
                )
                .scalars()
                .all()
            )
            if held:  # an alias moved onto it since we looked
                raise AliasHeldError(version.ref, [f"{version.model}@{a}" for a in held])
            con.execute(
                db.versions.delete().where(
                    db.versions.c.model_id == model_id, db.versions.c.version == version.version
                )
            )
            shared = con.execute(
                select(func.count()).where(db.versions.c.digest == version.digest)
            ).scalar_one()
            event = events.Event(
                "version_deleted", version.model, time.time(), {"version": version.version}
            )
            events.enqueue(con, event)
        if not shared:
            self.artifacts.delete(version.artifact_uri)
        self._announce(event)
        return version

    # -- aliases -------------------------------------------------------------------------

    def set_alias(
        self, model: str, alias: str, version: int, reason: str = "", forced: bool = False
    ) -> AliasMove:
        """Point ``model@alias`` at ``version`` without a gate (a manual move, e.g. staging)."""
        check_name("alias", alias)
        self.get(Ref(model, version=version))
        seen = self._alias_state(model, alias)
        return self._move(model, alias, "set", seen, version, reason, forced, None)

    def promote(
        self,
        model: str,
        version: int,
        alias: str = "production",
        *,
        thresholds: Sequence[MetricThreshold] = (),
        evaluator: Evaluator | None = None,
        force: bool = False,
        reason: str = "",
    ) -> Promotion:
        """Move ``model@alias`` to ``version`` if it clears the gate against the holder.

        Both are evaluated by ``evaluator`` on the same data; without one, the versions'
        recorded metrics are compared. ``force`` skips the verdict (the figures are still
        recorded when available) and is recorded as forced.
        """
        check_name("alias", alias)
        candidate = self.get(Ref(model, version=version))
        seen = self._alias_state(model, alias)
        target = f"{model}@{alias}"
        if seen is not None and seen[0] == version:
            raise RegistryError(f"{target} already holds version {version}")
        gate = None
        if thresholds or evaluator is not None:
            figures = evaluator or (lambda v: v.metrics)
            baseline = None if seen is None else figures(self.get(Ref(model, version=seen[0])))
            gate = check(thresholds, figures(candidate), baseline)
            if not gate.passed and not force:
                raise PromotionRefusedError(target, version, gate)
        move = self._move(model, alias, "promote", seen, version, reason, force, gate)
        return Promotion(move, gate)

    def rollback(self, model: str, alias: str = "production", reason: str = "") -> AliasMove:
        """Move ``model@alias`` back to the version it held before its current one."""
        check_name("alias", alias)
        seen = self._alias_state(model, alias)
        target = f"{model}@{alias}"
        if seen is None:
            raise NotFoundError("alias", target)
        previous = None
        for entry in reversed(self.history(model, alias)):
            if entry.to_version == seen[0] and entry.action in ("promote", "set"):
                previous = entry.from_version
                break
        if previous is None:
            raise NothingToRollBackError(target)
        self.get(Ref(model, version=previous))  # it must still exist
        return self._move(model, alias, "rollback", seen, previous, reason, False, None)

    def history(self, model: str, alias: str | None = None) -> list[AliasMove]:
        """The audit log of ``model`` (one alias, or all), oldest first."""
        with self.engine.connect() as con:
            model_id = self._model_id(con, check_name("model", model))
            query = select(db.audit).where(db.audit.c.model_id == model_id)
            if alias is not None:
                query = query.where(db.audit.c.alias == alias)
            rows = con.execute(query.order_by(db.audit.c.id)).all()
        return [
            AliasMove(
                model=model,
                alias=r.alias,
                action=r.action,
                from_version=r.from_version,
                to_version=r.to_version,
                actor=r.actor,
                at=instant(r.at),  # type: ignore[arg-type]
                reason=r.reason,
                forced=r.forced,
                gate=r.gate,
                revision=r.revision,
            )
            for r in rows
        ]

    def _alias_state(self, model: str, alias: str) -> tuple[int, int] | None:
        """``(version, revision)`` of an alias, or None when it is not set."""
        with self.engine.connect() as con:
            model_id = self._model_id(con, check_name("model", model))
            row = con.execute(
                select(db.aliases.c.version, db.aliases.c.revision).where(
                    db.aliases.c.model_id == model_id, db.aliases.c.alias == alias
                )
            ).first()
        return None if row is None else (int(row.version), int(row.revision))

    def _move(
        self,
        model: str,
        alias: str,
        action: str,
        seen: tuple[int, int] | None,
        version: int,
        reason: str,
        forced: bool,
        gate: GateResult | None,
    ) -> AliasMove:
        """Compare-and-swap the alias from ``seen`` to ``version``, with its audit entry."""
        target = f"{model}@{alias}"
        now = time.time()
        revision = 1 if seen is None else seen[1] + 1
        try:
            with self._writer.begin() as con:
                model_id = self._model_id(con, model)
                if seen is None:
                    con.execute(
                        db.aliases.insert().values(
                            model_id=model_id,
                            alias=alias,
                            version=version,
                            revision=revision,
                            updated_at=now,
                        )
                    )
                else:
                    swapped = con.execute(
                        update(db.aliases)
                        .where(
                            db.aliases.c.model_id == model_id,
                            db.aliases.c.alias == alias,
                            db.aliases.c.revision == seen[1],
                        )
                        .values(version=version, revision=revision, updated_at=now)
                    ).rowcount
                    if swapped != 1:
                        raise _LostRaceError()
                con.execute(
                    db.audit.insert().values(
                        model_id=model_id,
                        alias=alias,
                        action=action,
                        from_version=None if seen is None else seen[0],
                        to_version=version,
                        actor=self.actor,
                        at=now,
                        reason=reason,
                        forced=forced,
                        gate=None if gate is None else gate.to_json(),
                        revision=revision,
                    )
                )
                event = events.Event(
                    "alias_moved",
                    model,
                    now,
                    {
                        "alias": alias,
                        "action": action,
                        "from_version": None if seen is None else seen[0],
                        "to_version": version,
                        "forced": forced,
                    },
                )
                events.enqueue(con, event)
        except (_LostRaceError, IntegrityError):
            now_holding = self._alias_state(model, alias)
            raise ConcurrentChangeError(
                target,
                None if seen is None else seen[0],
                None if now_holding is None else now_holding[0],
            ) from None
        self._announce(event)
        return self.history(model, alias)[-1]

    # -- events --------------------------------------------------------------------------

    def subscribe(self, subscriber: events.Subscriber) -> None:
        """Call ``subscriber(event)`` after every committed change made through this object."""
        self._subscribers.append(subscriber)

    def add_webhook(self, url: str, secret: str, kinds: Sequence[str] = events.EVENTS) -> int:
        """Register a webhook; returns its id. Later changes are POSTed to it, signed."""
        unknown = [k for k in kinds if k not in events.EVENTS]
        if unknown or not url.startswith(("http://", "https://")) or not secret:
            raise RegistryError(
                f"webhook {url!r}: needs an http(s) URL, a secret and events among "
                f"{', '.join(events.EVENTS)} (got {list(kinds)})"
            )
        with self._writer.begin() as con:
            inserted = con.execute(
                db.webhooks.insert().values(
                    url=url, secret=secret, events=list(kinds), created_at=time.time()
                )
            )
            return _new_id(inserted)

    def deliver_events(
        self,
        policy: events.DeliveryPolicy | None = None,
        now: Callable[[], float] = time.time,
    ) -> int:
        """Deliver every due webhook event now; returns how many were delivered."""
        with self._delivery_lock:
            return events.deliver_due(self.engine, policy or events.DeliveryPolicy(), now=now)

    def _announce(self, event: events.Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                logger.exception("registry subscriber %r failed on %s", subscriber, event.kind)
        if self._deliver_in_background:
            threading.Thread(target=self._deliver_quietly, daemon=True).start()

    def _deliver_quietly(self) -> None:
        try:
            self.deliver_events()
        except Exception:
            logger.exception("webhook delivery failed; it is retried on the next change")


class _LostRaceError(Exception):
    """The compare-and-swap found another revision."""


def _version(model: str, row: Row[Any], holders: tuple[str, ...]) -> ModelVersion:
    return ModelVersion(
        model=model,
        version=row.version,
        digest=row.digest,
        artifact_uri=row.artifact_uri,
        size_bytes=row.size_bytes,
        detector=row.detector,
        params=dict(row.params),
        data_start=instant(row.data_start),
        data_end=instant(row.data_end),
        features=list(row.features),
        pipeline_run=row.pipeline_run,
        metrics=dict(row.metrics),
        perfml_version=row.perfml_version,
        tags=dict(row.tags),
        description=row.description,
        created_at=instant(row.created_at),  # type: ignore[arg-type]
        aliases=holders,
    )


def _new_id(result: Any) -> int:
    key = result.inserted_primary_key
    if key is None:
        raise RegistryError("the database returned no id for an inserted row")
    return int(key[0])


def _default_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{os.uname().nodename}"
