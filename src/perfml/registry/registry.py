"""The model registry: versions, aliases, promotion through the gate, rollback, events.

>>> import tempfile, pathlib
>>> from perfml.metadata import MetadataDatabase
>>> from perfml.registry.artifacts import FilesystemArtifactStore
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> database = MetadataDatabase(f"sqlite:///{root}/metadata.db")
>>> registry = ModelRegistry(database, FilesystemArtifactStore(root / "artifacts"))
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
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from perfml import __version__
from perfml.metadata import MetadataDatabase, TableOwner
from perfml.registry import events, tables
from perfml.registry.aliases import (
    AliasBook,
)
from perfml.registry.artifacts import ArtifactStore, sha256_of
from perfml.registry.errors import NotFoundError, RegistryError
from perfml.registry.names import Ref, check_name, parse_ref
from perfml.registry.records import Model, ModelVersion, instant
from perfml.registry.tables import TABLES

logger = logging.getLogger(__name__)


# The lookups serving makes on every reload, built once: only their parameters change.
_VERSION_OF_MODEL = (
    select(tables.versions)
    .join(tables.models, tables.models.c.id == tables.versions.c.model_id)
    .where(tables.models.c.name == bindparam("model"))
)
_BY_ALIAS = _VERSION_OF_MODEL.join(
    tables.aliases,
    (tables.aliases.c.model_id == tables.versions.c.model_id)
    & (tables.aliases.c.version == tables.versions.c.version),
).where(tables.aliases.c.alias == bindparam("alias"))
_BY_NUMBER = _VERSION_OF_MODEL.where(tables.versions.c.version == bindparam("version"))
_LATEST = _VERSION_OF_MODEL.order_by(tables.versions.c.version.desc()).limit(1)
_HOLDERS = select(tables.aliases.c.alias).where(
    tables.aliases.c.model_id == bindparam("model_id"),
    tables.aliases.c.version == bindparam("version"),
)


class AliasHeldError(RegistryError):
    def __init__(self, ref: str, holders: Sequence[str]) -> None:
        super().__init__(f"{ref} is held by alias(es) {', '.join(holders)}; move them first")


class ModelRegistry(TableOwner, AliasBook):
    """Models and their versions in the metadata database, artifacts in an
    :class:`ArtifactStore`."""

    tables = TABLES

    def __init__(
        self,
        database: MetadataDatabase,
        artifacts: ArtifactStore,
        actor: str | None = None,
        cache_dir: Path | None = None,
        deliver_in_background: bool = True,
    ) -> None:
        super().__init__(database)
        self._writer = database.writer
        self.artifacts = artifacts
        self.actor = actor or _default_actor()
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "perfml-artifact-cache"
        self._subscribers: list[events.Subscriber] = []
        self._deliver_in_background = deliver_in_background
        self._delivery_lock = threading.Lock()
        self.changed = False
        """Whether this registry announced a change (its events may wait for delivery)."""

    @property
    def delivers_in_background(self) -> bool:
        """Whether each change's webhook events are sent from a thread as it happens."""
        return self._deliver_in_background

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
            names = con.execute(
                select(tables.models.c.name).order_by(tables.models.c.name)
            ).scalars()
            return [self._model(con, n) for n in names.all()]

    def model(self, name: str) -> Model:
        with self.engine.connect() as con:
            return self._model(con, check_name("model", name))

    def _model(self, con: Connection, name: str) -> Model:
        row = con.execute(select(tables.models).where(tables.models.c.name == name)).first()
        if row is None:
            raise NotFoundError("model", name)
        latest = con.execute(
            select(func.max(tables.versions.c.version)).where(tables.versions.c.model_id == row.id)
        ).scalar()
        held = con.execute(
            select(tables.aliases.c.alias, tables.aliases.c.version).where(
                tables.aliases.c.model_id == row.id
            )
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
        found = con.execute(select(tables.models.c.id).where(tables.models.c.name == name)).scalar()
        if found is not None:
            return int(found)
        if not create:
            raise NotFoundError("model", name)
        for key in tags or {}:
            check_name("tag", key)
        inserted = con.execute(
            tables.models.insert().values(
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
        entities: Sequence[str] | None = None,
        pipeline_run: str | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
    ) -> ModelVersion:
        """Store ``artifact`` and record a new version of ``model`` (created if needed), with
        its lineage: the data window, the ``features`` it scores, the ``entities`` it learnt.

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
                        select(tables.versions.c.version).where(
                            tables.versions.c.model_id == model_id,
                            tables.versions.c.digest == digest,
                        )
                    ).scalar()
                    if existing is not None:
                        return self.get(Ref(model, version=int(existing)))
                    number = 1 + (
                        con.execute(
                            select(func.max(tables.versions.c.version)).where(
                                tables.versions.c.model_id == model_id
                            )
                        ).scalar()
                        or 0
                    )
                    now = time.time()
                    con.execute(
                        tables.versions.insert().values(
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
                            entities=None if entities is None else sorted(entities),
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
                select(tables.aliases.c.version).where(
                    tables.aliases.c.model_id == model_id, tables.aliases.c.alias == ref.alias
                )
            ).scalar()
            if number is None:
                raise NotFoundError("alias", str(ref), "set it with promote or set-alias")
            return int(number)
        latest = con.execute(
            select(func.max(tables.versions.c.version)).where(
                tables.versions.c.model_id == model_id
            )
        ).scalar()
        if latest is None:
            raise NotFoundError("version", str(ref), "the model has no versions")
        return int(latest)

    def versions(self, model: str) -> list[ModelVersion]:
        with self.engine.connect() as con:
            model_id = self._model_id(con, check_name("model", model))
            held: dict[int, list[str]] = {}
            for alias, number in con.execute(
                select(tables.aliases.c.alias, tables.aliases.c.version).where(
                    tables.aliases.c.model_id == model_id
                )
            ):
                held.setdefault(number, []).append(alias)
            rows = con.execute(
                select(tables.versions)
                .where(tables.versions.c.model_id == model_id)
                .order_by(tables.versions.c.version)
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
                table, where = tables.models, tables.models.c.id == model_id
            else:
                number = self._version_number(con, model_id, ref)
                table = tables.versions
                where = and_(
                    tables.versions.c.model_id == model_id, tables.versions.c.version == number
                )
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
                    select(tables.aliases.c.alias).where(
                        tables.aliases.c.model_id == model_id,
                        tables.aliases.c.version == version.version,
                    )
                )
                .scalars()
                .all()
            )
            if held:  # an alias moved onto it since we looked
                raise AliasHeldError(version.ref, [f"{version.model}@{a}" for a in held])
            con.execute(
                tables.versions.delete().where(
                    tables.versions.c.model_id == model_id,
                    tables.versions.c.version == version.version,
                )
            )
            shared = con.execute(
                select(func.count()).where(tables.versions.c.digest == version.digest)
            ).scalar_one()
            event = events.Event(
                "version_deleted", version.model, time.time(), {"version": version.version}
            )
            events.enqueue(con, event)
        if not shared:
            self.artifacts.delete(version.artifact_uri)
        self._announce(event)
        return version

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
                tables.webhooks.insert().values(
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
        self.changed = True
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
        entities=None if row.entities is None else tuple(row.entities),
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
