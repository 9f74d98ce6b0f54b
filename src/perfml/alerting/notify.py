"""Telling people about alerts: notifiers (webhook, log file, e-mail) and what they send.

A :class:`Notification` is one message about one group of alerts, built by the dispatcher
(:mod:`perfml.alerting.dispatch`); a :class:`Notifier` delivers it. Notifiers are plugins: a
base class and a registry, so another channel is one class and a decorator. The webhook sends
the Alertmanager webhook payload (version 4) byte for byte in shape, so a receiver written for
Alertmanager works with perfml unchanged.

>>> from perfml.alerting.alerts import Alert, AlertState
>>> alert = Alert("HighLoad", {"alertname": "HighLoad", "host": "a"}, {"summary": "busy"},
...               AlertState.FIRING, active_at_ms=0, fired_at_ms=60_000)
>>> note = Notification("perfml", '{}:{alertname="HighLoad"}', {"alertname": "HighLoad"},
...                     (alert,), at_ms=90_000)
>>> payload = webhook_payload(note)
>>> payload.status, payload.alerts[0].starts_at, payload.alerts[0].ends_at
('firing', '1970-01-01T00:01:00Z', '0001-01-01T00:00:00Z')
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from perfml.alerting.alerts import Alert, AlertState, format_labels
from perfml.alerting.errors import AlertingError
from perfml.config import NotificationSettings
from perfml.plugins import PluginTakenError, Registry, UnknownPluginError

log = logging.getLogger(__name__)

ZERO_TIME = "0001-01-01T00:00:00Z"
"""Go's zero time: Alertmanager's ``endsAt`` of an alert still firing."""


class NotifyError(AlertingError):
    """A notification could not be delivered (after its retries)."""

    def __init__(self, integration: str, target: str, problem: str) -> None:
        self.integration = integration
        self.target = target
        self.problem = problem
        super().__init__(f"{integration} notification to {target} failed: {problem}")


class UnknownNotifierError(AlertingError, UnknownPluginError):
    """No notifier of that kind is registered."""


class NotifierTakenError(AlertingError, PluginTakenError):
    """Two notifier classes were registered under one kind."""


# -- what is sent ----------------------------------------------------------------------------


def rfc3339(ms: int | None) -> str:
    """Unix milliseconds as Go marshals a time (RFC 3339, fraction only when there is one).

    >>> rfc3339(1_700_000_000_000), rfc3339(1_700_000_000_250), rfc3339(None)
    ('2023-11-14T22:13:20Z', '2023-11-14T22:13:20.25Z', '0001-01-01T00:00:00Z')
    """
    if ms is None:
        return ZERO_TIME
    moment = datetime.fromtimestamp(ms // 1000, tz=UTC)
    fraction = f"{ms % 1000:03d}".rstrip("0")
    return f"{moment:%Y-%m-%dT%H:%M:%S}" + (f".{fraction}" if fraction else "") + "Z"


@dataclass(frozen=True)
class Notification:
    """One message about one group of alerts, to one receiver."""

    receiver: str
    group_key: str
    group_labels: Mapping[str, str]
    alerts: tuple[Alert, ...]
    at_ms: int
    external_url: str = ""
    generator_urls: Mapping[str, str] = field(default_factory=dict)
    """The link to each rule's expression, by rule name."""
    truncated_alerts: int = 0

    @property
    def status(self) -> Literal["firing", "resolved"]:
        """``firing`` if any alert of the group fires, else ``resolved``."""
        return "firing" if any(a.state is AlertState.FIRING for a in self.alerts) else "resolved"

    @property
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if a.state is AlertState.FIRING]

    def common_labels(self) -> dict[str, str]:
        return _common([a.labels for a in self.alerts])

    def common_annotations(self) -> dict[str, str]:
        return _common([a.annotations for a in self.alerts])


def _common(mappings: list[Mapping[str, str]]) -> dict[str, str]:
    if not mappings:
        return {}
    first = mappings[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in mappings[1:])}


@dataclass(frozen=True)
class Delivery:
    """What was sent to whom, and how it went: one row of the notification log."""

    at_ms: int
    integration: str
    target: str
    group_key: str
    status: str
    fingerprints: tuple[str, ...]
    outcome: Literal["sent", "failed"]
    error: str = ""
    attempts: int = 1


class _Wire(BaseModel):
    # Alertmanager's JSON names are camelCase; the fields are snake_case in Python.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


class WebhookAlert(_Wire):
    """One alert of the Alertmanager webhook payload."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str
    generator_url: str = Field(alias="generatorURL")
    fingerprint: str


class WebhookPayload(_Wire):
    """The Alertmanager webhook payload, version 4."""

    version: Literal["4"] = "4"
    group_key: str
    truncated_alerts: int
    status: Literal["firing", "resolved"]
    receiver: str
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str = Field(alias="externalURL")
    alerts: list[WebhookAlert]


def webhook_payload(notification: Notification) -> WebhookPayload:
    """The Alertmanager webhook payload of ``notification``."""
    return WebhookPayload(
        group_key=notification.group_key,
        truncated_alerts=notification.truncated_alerts,
        status=notification.status,
        receiver=notification.receiver,
        group_labels=dict(notification.group_labels),
        common_labels=notification.common_labels(),
        common_annotations=notification.common_annotations(),
        external_url=notification.external_url,
        alerts=[
            WebhookAlert(
                status="firing" if a.state is AlertState.FIRING else "resolved",
                labels=dict(a.labels),
                annotations=dict(a.annotations),
                starts_at=rfc3339(a.fired_at_ms if a.fired_at_ms is not None else a.active_at_ms),
                ends_at=rfc3339(a.resolved_at_ms if a.state is AlertState.RESOLVED else None),
                generator_url=notification.generator_urls.get(a.rule, ""),
                fingerprint=a.fingerprint,
            )
            for a in notification.alerts
        ],
    )


def generator_url(external_url: str, expr: str) -> str:
    """The link Prometheus puts in ``generatorURL``: its graph page with the expression."""
    return f"{external_url.rstrip('/')}/graph?g0.expr={quote(expr, safe='')}&g0.tab=1"


def subject(notification: Notification) -> str:
    """Alertmanager's default e-mail subject: ``[FIRING:2] HighLoad (host-a warning)``."""
    status = notification.status.upper()
    if notification.status == "firing":
        status += f":{len(notification.firing)}"
    group = notification.group_labels
    values = " ".join(group[k] for k in sorted(group))
    rest = {k: v for k, v in notification.common_labels().items() if k not in group}
    extra = f" ({' '.join(rest[k] for k in sorted(rest))})" if rest else ""
    return f"[{status}] {values}{extra}"


def text_body(notification: Notification) -> str:
    """A plain-text account of the group's alerts: labels, annotations, times."""
    lines = [subject(notification), ""]
    for alert in notification.alerts:
        state = "FIRING" if alert.state is AlertState.FIRING else "RESOLVED"
        lines.append(f"{state} {format_labels(alert.labels)}")
        lines.extend(f"  {k}: {v}" for k, v in sorted(alert.annotations.items()))
        lines.append(f"  since: {rfc3339(alert.fired_at_ms or alert.active_at_ms)}")
        if alert.state is AlertState.RESOLVED:
            lines.append(f"  resolved: {rfc3339(alert.resolved_at_ms)}")
        lines.append("")
    return "\n".join(lines)


# -- the notifiers ---------------------------------------------------------------------------


class Notifier(ABC):
    """A channel that delivers notifications; ``send`` raises :class:`NotifyError`."""

    kind: ClassVar[str] = ""
    send_resolved: bool = True

    @property
    @abstractmethod
    def target(self) -> str:
        """Where it sends (a URL, a path, addresses), for the notification log."""

    @abstractmethod
    def send(self, notification: Notification) -> int:
        """Deliver ``notification``; return the number of attempts it took."""

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.target}"


NotifierRegistry = Registry[type[Notifier]]
"""Notifier classes by kind."""


def notifier_registry() -> NotifierRegistry:
    """A fresh, empty registry of notifiers (a test's or a plugin's own)."""
    return Registry(
        "notifier", unknown=UnknownNotifierError, taken=NotifierTakenError, name_attribute="kind"
    )


NOTIFIERS: NotifierRegistry = notifier_registry()
"""The default registry: the webhook, the log file and SMTP, and any a plugin adds."""
notifiers = NOTIFIERS


@NOTIFIERS.register
class WebhookNotifier(Notifier):
    """POSTs the Alertmanager webhook payload; retries connection errors, 429 and 5xx with
    exponential backoff (a 4xx other than 429 is the receiver refusing: not retried)."""

    kind = "webhook"

    def __init__(
        self,
        url: str,
        send_resolved: bool = True,
        timeout_s: float = 10.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = url
        self.send_resolved = send_resolved
        self.timeout_s = timeout_s
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._client = client

    @property
    def target(self) -> str:
        return self.url

    def send(self, notification: Notification) -> int:
        body = webhook_payload(notification).to_json().encode()
        headers = {"Content-Type": "application/json", "User-Agent": "perfml-alerting"}
        problem = ""
        for attempt in range(1, self.attempts + 1):
            try:
                if self._client is not None:
                    response = self._client.post(self.url, content=body, headers=headers)
                else:
                    response = httpx.post(
                        self.url, content=body, headers=headers, timeout=self.timeout_s
                    )
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return attempt
                problem = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code != 429:
                    raise NotifyError(self.kind, self.url, problem)
            if attempt < self.attempts:
                self._sleep(self.backoff_s * 2 ** (attempt - 1))
        raise NotifyError(self.kind, self.url, f"{problem} (after {self.attempts} attempts)")


@NOTIFIERS.register
class LogNotifier(Notifier):
    """Appends each notification as one JSON line (the webhook payload and ``at``) to a file,
    flushed and fsynced, so the log is complete after a crash."""

    kind = "log"

    def __init__(self, path: str | os.PathLike[str], send_resolved: bool = True) -> None:
        self.path = Path(path)
        self.send_resolved = send_resolved

    @property
    def target(self) -> str:
        return str(self.path)

    def send(self, notification: Notification) -> int:
        record = {
            "at": rfc3339(notification.at_ms),
            **webhook_payload(notification).model_dump(by_alias=True),
        }
        line = json.dumps(record, sort_keys=True) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise NotifyError(self.kind, str(self.path), exc.strerror or str(exc)) from None
        return 1


@NOTIFIERS.register
class SmtpNotifier(Notifier):
    """Sends a plain-text e-mail through ``smarthost`` (``host:port``), with STARTTLS when
    ``require_tls`` (a server that does not offer it is a failure), logging in when a
    ``username`` is given with the password read from the file ``password_file`` or the
    environment variable ``password_env`` (never written in the settings)."""

    kind = "smtp"

    def __init__(
        self,
        smarthost: str,
        from_: str,
        to: str | list[str],
        username: str | None = None,
        password_env: str | None = None,
        require_tls: bool = True,
        send_resolved: bool = False,
        timeout_s: float = 10.0,
        password_file: str | os.PathLike[str] | None = None,
    ) -> None:
        host, _, port = smarthost.rpartition(":")
        if not host or not port.isdigit():
            raise NotifyError(self.kind or "smtp", smarthost, "smarthost must be host:port")
        self.host, self.port = host, int(port)
        self.from_ = from_
        addresses = to.split(",") if isinstance(to, str) else to
        self.to = [a.strip() for a in addresses if a.strip()]
        self.username = username
        self.password_env = password_env
        self.password_file = password_file
        self.require_tls = require_tls
        self.send_resolved = send_resolved
        self.timeout_s = timeout_s

    @property
    def target(self) -> str:
        return ",".join(self.to)

    def message(self, notification: Notification) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = subject(notification)
        message["From"] = self.from_
        message["To"] = ", ".join(self.to)
        message.set_content(text_body(notification))
        return message

    def send(self, notification: Notification) -> int:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                smtp.ehlo()
                if self.require_tls:
                    if not smtp.has_extn("starttls"):
                        raise NotifyError(
                            self.kind, self.target, f"{self.host}:{self.port} offers no STARTTLS"
                        )
                    smtp.starttls()
                    smtp.ehlo()
                if self.username:
                    smtp.login(self.username, self._password())
                smtp.send_message(self.message(notification))
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifyError(self.kind, self.target, f"{type(exc).__name__}: {exc}") from None
        return 1

    def _password(self) -> str:
        if self.password_file is not None:
            try:
                return Path(self.password_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                problem = f"password file {self.password_file}: {exc.strerror}"
                raise NotifyError(self.kind, self.target, problem) from None
        value = os.environ.get(self.password_env or "", "")
        if not value:
            raise NotifyError(
                self.kind, self.target, f"environment variable {self.password_env!r} is not set"
            )
        return value


def _create(registry: NotifierRegistry, kind: str, **options: Any) -> Notifier:
    """A notifier of ``kind`` with ``options`` (each kind takes its own)."""
    make: Callable[..., Notifier] = registry.get(kind)
    return make(**options)


def notifiers_from_settings(
    notifications: NotificationSettings,
    default_log: Path | None,
    registry: NotifierRegistry = NOTIFIERS,
) -> list[Notifier]:
    """The notifiers that ``monitoring.notifications`` configures: each webhook, the log file
    (``default_log`` when the setting is empty) and SMTP when set."""
    found: list[Notifier] = []
    for hook in notifications.webhooks:
        found.append(_create(registry, "webhook", url=hook.url, send_resolved=hook.send_resolved))
    path = notifications.log or default_log
    if path is not None:
        found.append(_create(registry, "log", path=path))
    smtp = notifications.smtp
    if smtp is not None:
        found.append(
            _create(
                registry,
                "smtp",
                smarthost=smtp.smarthost,
                from_=smtp.from_,
                to=smtp.to,
                username=smtp.username,
                password_env=smtp.password_env,
                password_file=smtp.password_file,
                require_tls=smtp.require_tls,
                send_resolved=smtp.send_resolved,
            )
        )
    return found
