"""Telling the world that a version was created or an alias moved.

In-process subscribers are called right after the change commits. Webhooks get a JSON POST,
signed ``X-Perfml-Signature-256: sha256=<HMAC-SHA256 of the body with the shared secret>``
(as GitHub signs its webhooks), from an outbox written in the change's own transaction: a
delivery that fails is retried with exponential backoff until it succeeds or runs out of
attempts, and survives a restart of the process in between.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, and_, select, update

from perfml.registry import tables

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Perfml-Signature-256"
EVENT_HEADER = "X-Perfml-Event"
DELIVERY_HEADER = "X-Perfml-Delivery"
EVENTS = ("version_created", "alias_moved", "version_deleted")


@dataclass(frozen=True)
class Event:
    """Something that happened in the registry."""

    kind: str
    model: str
    at: float
    payload: dict[str, Any]

    def body(self) -> str:
        return json.dumps(
            {"event": self.kind, "model": self.model, "at": self.at, **self.payload},
            sort_keys=True,
        )


Subscriber = Callable[[Event], None]


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, secret: str, header: str) -> bool:
    """Whether ``header`` is the signature of ``body`` (constant-time comparison)."""
    return hmac.compare_digest(sign(body, secret), header)


def enqueue(con: Connection, event: Event) -> None:
    """Write ``event`` to the outbox of every webhook that wants it (inside the caller's tx)."""
    hooks = con.execute(select(tables.webhooks.c.id, tables.webhooks.c.events)).all()
    body = event.body()
    for hook_id, wanted in hooks:
        if event.kind in wanted:
            con.execute(
                tables.outbox.insert().values(
                    webhook_id=hook_id,
                    event=event.kind,
                    body=body,
                    created_at=event.at,
                    attempts=0,
                    next_attempt_at=event.at,
                )
            )


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard to try: attempts in all, and the backoff between them."""

    attempts: int = 8
    base_delay: float = 1.0
    max_delay: float = 300.0
    timeout: float = 10.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


def deliver_due(
    engine: Engine,
    policy: DeliveryPolicy = DeliveryPolicy(),
    client: httpx.Client | None = None,
    now: Callable[[], float] = time.time,
) -> int:
    """POST every outbox entry that is due; returns how many were delivered.

    An entry is claimed by moving its ``next_attempt_at`` forward before the POST, so two
    dispatchers running at once do not send it twice.
    """
    delivered = 0
    own = client is None
    http = client or httpx.Client(timeout=policy.timeout)
    try:
        while True:
            with engine.begin() as con:
                row = con.execute(
                    select(tables.outbox, tables.webhooks.c.url, tables.webhooks.c.secret)
                    .join(tables.webhooks, tables.webhooks.c.id == tables.outbox.c.webhook_id)
                    .where(
                        tables.outbox.c.delivered_at.is_(None),
                        tables.outbox.c.failed_at.is_(None),
                        tables.outbox.c.next_attempt_at <= now(),
                    )
                    .order_by(tables.outbox.c.id)
                    .limit(1)
                ).first()
                if row is None:
                    return delivered
                claimed = con.execute(
                    update(tables.outbox)
                    .where(
                        and_(
                            tables.outbox.c.id == row.id,
                            tables.outbox.c.next_attempt_at == row.next_attempt_at,
                        )
                    )
                    .values(next_attempt_at=now() + policy.timeout * 2)
                ).rowcount
            if not claimed:
                continue
            error = _post(http, row.url, row.secret, row.event, row.id, row.body)
            attempts = row.attempts + 1
            with engine.begin() as con:
                if error is None:
                    values: dict[str, Any] = {"delivered_at": now(), "attempts": attempts}
                    delivered += 1
                elif attempts >= policy.attempts:
                    values = {"failed_at": now(), "attempts": attempts, "last_error": error}
                    logger.warning(
                        "webhook %s gave up after %d attempts: %s", row.url, attempts, error
                    )
                else:
                    values = {
                        "attempts": attempts,
                        "last_error": error,
                        "next_attempt_at": now() + policy.delay(attempts),
                    }
                con.execute(
                    update(tables.outbox).where(tables.outbox.c.id == row.id).values(**values)
                )
    finally:
        if own:
            http.close()


def _post(
    http: httpx.Client, url: str, secret: str, event: str, delivery: int, body: str
) -> str | None:
    payload = body.encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(payload, secret),
        EVENT_HEADER: event,
        DELIVERY_HEADER: str(delivery),
        "User-Agent": "perfml-registry",
    }
    try:
        response = http.post(url, content=payload, headers=headers)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"
