"""Alertmanager's dispatch, natively: grouping, timing, deduplication and silences.

Firing and resolved alerts go in; notifications come out, exactly when Alertmanager would send
them, so the embedded mode pages people as often as a cluster does:

- alerts are **grouped** by the ``group_by`` labels (``...`` groups by every label); a new
  group's first notification waits ``group_wait`` (sent at once if its alert fired more than
  ``group_wait`` ago, as Alertmanager does for alerts that arrive late);
- a group is then flushed every ``group_interval``: a notification is sent when a firing alert is
  new, when a resolved one is new and the receiver wants resolved alerts, when every alert of a
  group that was notified firing is resolved, or when ``repeat_interval`` has passed (strictly)
  since the last notification of an unchanged firing group; otherwise nothing (the
  **notification log** of what each receiver was last told dedups);
- resolved alerts leave the group once notified; an empty group is removed;
- **silenced** alerts are muted: neither sent nor counted;
- **inhibited** alerts are muted too, as Alertmanager's ``inhibit_rules`` mute them: an alert
  matching an inhibition's target matchers while an alert matching its source matchers fires
  with the same values of its ``equal`` labels (:class:`Inhibition`).

:func:`routing_from_config` reads the routes and inhibitions of the Alertmanager configuration
perfml exports, so the embedded mode routes and inhibits as a cluster's Alertmanager does.

Time is passed in (``at_ms``); nothing sleeps, so behaviour is deterministic and replayable.

>>> m = LabelMatcher.parse('team=~"perf|ops"')
>>> m.name, m.op, m.value, m.matches({"team": "perf"}), m.matches({"team": "perfx"})
('team', '=~', 'perf|ops', True, False)
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from perfml.alerting.alertmanager import AlertmanagerConfig
from perfml.alerting.alertmanager import Route as AlertmanagerRoute
from perfml.alerting.alerts import Alert, AlertState, format_labels
from perfml.alerting.errors import AlertingError
from perfml.alerting.notify import Delivery, Notification, Notifier, NotifyError
from perfml.errors import UsageError
from perfml.timeparse import parse_duration

ALL_LABELS = "..."
"""In ``group_by``: group by every label (one group per alert)."""


class BadMatcherError(AlertingError, UsageError):
    def __init__(self, text: str, problem: str) -> None:
        super().__init__(f"matcher {text!r}: {problem} (write name=value, name!=value, "
                         "name=~regex or name!~regex)")  # fmt: skip


# -- silences --------------------------------------------------------------------------------

_MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*")


@dataclass(frozen=True)
class LabelMatcher:
    """``name op value`` as Alertmanager matches labels (regexes fully anchored; a missing
    label is the empty string)."""

    name: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise BadMatcherError(str(self), f"bad regex: {exc}") from None

    @classmethod
    def parse(cls, text: str) -> LabelMatcher:
        match = _MATCHER.fullmatch(text)
        if match is None:
            raise BadMatcherError(text, "not a matcher")
        name, op, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        return cls(name, op, value)  # type: ignore[arg-type]

    def matches(self, labels: Mapping[str, str]) -> bool:
        found = labels.get(self.name, "")
        if self.op == "=":
            return found == self.value
        if self.op == "!=":
            return found != self.value
        hit = re.fullmatch(self.value, found) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


class EmptySilenceError(AlertingError, UsageError):
    def __init__(self) -> None:
        super().__init__("a silence needs at least one matcher, e.g. alertname=JobFailed")


class BadSilenceWindowError(AlertingError, UsageError):
    def __init__(self, starts_at_ms: int, ends_at_ms: int) -> None:
        super().__init__(f"a silence must end after it starts: starts {starts_at_ms} ms, "
                         f"ends {ends_at_ms} ms")  # fmt: skip


@dataclass(frozen=True)
class Silence:
    """Mutes the alerts all of whose ``matchers`` match, from ``starts_at_ms`` (inclusive) to
    ``ends_at_ms`` (exclusive)."""

    id: str
    matchers: tuple[LabelMatcher, ...]
    starts_at_ms: int
    ends_at_ms: int
    created_by: str = ""
    comment: str = ""

    @classmethod
    def new(
        cls,
        matchers: Sequence[str | LabelMatcher],
        starts_at_ms: int,
        ends_at_ms: int,
        created_by: str = "",
        comment: str = "",
    ) -> Silence:
        parsed = tuple(
            m if isinstance(m, LabelMatcher) else LabelMatcher.parse(m) for m in matchers
        )
        if not parsed:
            raise EmptySilenceError()
        if ends_at_ms <= starts_at_ms:
            raise BadSilenceWindowError(starts_at_ms, ends_at_ms)
        return cls(str(uuid.uuid4()), parsed, starts_at_ms, ends_at_ms, created_by, comment)

    def is_active(self, at_ms: int) -> bool:
        return self.starts_at_ms <= at_ms < self.ends_at_ms

    def mutes(self, labels: Mapping[str, str], at_ms: int) -> bool:
        return self.is_active(at_ms) and all(m.matches(labels) for m in self.matchers)


def _group_labels(alert: Alert, group_by: tuple[str, ...]) -> dict[str, str]:
    if ALL_LABELS in group_by:
        return dict(alert.labels)
    return {k: alert.labels[k] for k in group_by if k in alert.labels}


def _needs_update(
    entry: LogEntry | None,
    firing: frozenset[str],
    resolved: frozenset[str],
    send_resolved: bool,
    at_ms: int,
    repeat_ms: int,
) -> bool:
    """Alertmanager's ``DedupStage.needsUpdate``, case by case."""
    if entry is None:
        return bool(firing)
    if not firing <= entry.firing:
        return True
    if not firing:
        return bool(entry.firing)
    if send_resolved and not resolved <= entry.resolved:
        return True
    return entry.at_ms < at_ms - repeat_ms


# -- grouping and the notification log -------------------------------------------------------


@dataclass(frozen=True)
class GroupingOptions:
    """Alertmanager's route timing (defaults: Alertmanager's own)."""

    group_by: tuple[str, ...] = ("alertname",)
    group_wait_ms: int = 30_000
    group_interval_ms: int = 5 * 60_000
    repeat_interval_ms: int = 4 * 3600_000


@dataclass(frozen=True)
class Route:
    """A sub-route: alerts matching every matcher are grouped and timed by its ``options``
    (the first matching route wins; the others go by the dispatcher's own options)."""

    matchers: tuple[LabelMatcher, ...]
    options: GroupingOptions

    @property
    def key(self) -> str:
        """Alertmanager's route key: ``{}/{severity="critical"}``."""
        return "{}/{" + ",".join(str(m) for m in self.matchers) + "}"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


def _ms(text: str) -> int:
    return round(parse_duration(text, allow_zero=True).total_seconds() * 1000)


@dataclass(frozen=True)
class Inhibition:
    """Alertmanager's inhibit rule: an alert matching every ``target`` matcher is not notified
    while an alert matching every ``source`` matcher fires with the same values of the
    ``equal`` labels (a label missing from both is equal). As in Alertmanager, an alert that
    matches both sides is not inhibited by a source that matches both too, so a rule never
    inhibits an alert by itself.

    >>> storm = Inhibition.parse(['alertname="Storm"'], ['alertname="Host"'], ["model"])
    >>> host = {"alertname": "Host", "model": "cpu", "entity": "host-1"}
    >>> storm.mutes(host, [{"alertname": "Storm", "model": "cpu"}])
    True
    >>> storm.mutes(host, [{"alertname": "Storm", "model": "disk"}])
    False
    """

    source: tuple[LabelMatcher, ...]
    target: tuple[LabelMatcher, ...]
    equal: tuple[str, ...]

    @classmethod
    def parse(
        cls, source: Sequence[str], target: Sequence[str], equal: Sequence[str]
    ) -> Inhibition:
        return cls(
            tuple(LabelMatcher.parse(m) for m in source),
            tuple(LabelMatcher.parse(m) for m in target),
            tuple(equal),
        )

    def mutes(self, labels: Mapping[str, str], firing: Iterable[Mapping[str, str]]) -> bool:
        """Whether an alert with ``labels`` is muted while the alerts ``firing`` fire."""
        if not all(m.matches(labels) for m in self.target):
            return False
        both_sides = all(m.matches(labels) for m in self.source)
        for source in firing:
            if not all(m.matches(source) for m in self.source):
                continue
            if both_sides and all(m.matches(source) for m in self.target):
                continue
            if all(source.get(name, "") == labels.get(name, "") for name in self.equal):
                return True
        return False


def _options(route: AlertmanagerRoute, parent: GroupingOptions) -> GroupingOptions:
    """``route``'s timing and grouping, what it does not set taken from ``parent``."""

    def ms(text: str | None, inherited: int) -> int:
        return _ms(text) if text else inherited

    return GroupingOptions(
        group_by=tuple(route.group_by) if route.group_by else parent.group_by,
        group_wait_ms=ms(route.group_wait, parent.group_wait_ms),
        group_interval_ms=ms(route.group_interval, parent.group_interval_ms),
        repeat_interval_ms=ms(route.repeat_interval, parent.repeat_interval_ms),
    )


def routing_from_config(
    config: AlertmanagerConfig,
) -> tuple[GroupingOptions, tuple[Route, ...], tuple[Inhibition, ...]]:
    """The root options, the sub-routes (each inheriting what it does not set from the root,
    as Alertmanager's do) and the inhibitions of an Alertmanager configuration."""
    root = _options(config.route, GroupingOptions())
    routes = tuple(
        Route(tuple(LabelMatcher.parse(m) for m in sub.matchers or ()), _options(sub, root))
        for sub in config.route.routes or ()
    )
    inhibitions = tuple(
        Inhibition.parse(rule.source_matchers, rule.target_matchers, rule.equal)
        for rule in config.inhibit_rules
    )
    return root, routes, inhibitions


@dataclass
class _Group:
    key: str
    labels: dict[str, str]
    options: GroupingOptions
    alerts: dict[str, Alert] = field(default_factory=dict)
    next_flush_ms: int = 0
    has_flushed: bool = False


@dataclass(frozen=True)
class LogEntry:
    """What one notifier was last told about one group (Alertmanager's nflog entry)."""

    firing: frozenset[str]
    resolved: frozenset[str]
    at_ms: int


def group_key(labels: Mapping[str, str], route_key: str = "{}") -> str:
    """Alertmanager's group key: ``{}:{alertname="HighLoad"}`` under the root route."""
    return f"{route_key}:{format_labels(labels)}"


class Dispatcher:
    """Groups, times, dedups and sends alerts to ``notifiers`` (see the module docstring).

    ``generator_urls`` links each rule name to its expression for the payload. Delivery
    failures are caught and returned as failed :class:`Delivery` records, never raised: a
    broken receiver must not stop rule evaluation.
    """

    def __init__(
        self,
        notifiers: Sequence[Notifier],
        options: GroupingOptions | None = None,
        *,
        receiver: str = "perfml",
        external_url: str = "",
        generator_urls: Mapping[str, str] | None = None,
        routes: Sequence[Route] = (),
        inhibitions: Sequence[Inhibition] = (),
    ) -> None:
        self.notifiers = list(notifiers)
        self.options = options or GroupingOptions()
        self.routes = tuple(routes)
        self.inhibitions = tuple(inhibitions)
        self.receiver = receiver
        self.external_url = external_url
        self.generator_urls = dict(generator_urls or {})
        self._groups: dict[str, _Group] = {}
        self._log: dict[tuple[str, str], LogEntry] = {}

    # -- input ---------------------------------------------------------------------------------

    def dispatch(
        self, alerts: Iterable[Alert], at_ms: int, silences: Sequence[Silence] = ()
    ) -> list[Delivery]:
        """Take the current firing and resolved alerts (others are ignored), then flush every
        group that is due at ``at_ms``; return what was sent or failed."""
        for alert in alerts:
            if alert.state in (AlertState.FIRING, AlertState.RESOLVED):
                self._insert(alert, at_ms)
        return self.flush_due(at_ms, silences)

    def _insert(self, alert: Alert, at_ms: int) -> None:
        route = next((r for r in self.routes if r.matches(alert.labels)), None)
        options = route.options if route is not None else self.options
        labels = _group_labels(alert, options.group_by)
        key = group_key(labels, route.key if route is not None else "{}")
        group = self._groups.get(key)
        if group is None:
            group = _Group(key, labels, options, next_flush_ms=at_ms + options.group_wait_ms)
            self._groups[key] = group
        group.alerts[alert.fingerprint] = alert
        started = alert.fired_at_ms if alert.fired_at_ms is not None else alert.active_at_ms
        if not group.has_flushed and started + options.group_wait_ms < at_ms:
            group.next_flush_ms = min(group.next_flush_ms, at_ms)

    # -- flushing ------------------------------------------------------------------------------

    def next_flush_ms(self) -> int | None:
        """When the earliest group is due, if any (a loop may wake then)."""
        return min((g.next_flush_ms for g in self._groups.values()), default=None)

    def flush_due(self, at_ms: int, silences: Sequence[Silence] = ()) -> list[Delivery]:
        deliveries: list[Delivery] = []
        inhibiting = [  # every firing alert may inhibit others, even a silenced one
            alert.labels
            for group in self._groups.values()
            for alert in group.alerts.values()
            if alert.state is AlertState.FIRING
        ]
        for key in sorted(self._groups):
            group = self._groups[key]
            if group.next_flush_ms > at_ms:
                continue
            sent, ok = self._flush(group, at_ms, silences, inhibiting)
            deliveries.extend(sent)
            group.has_flushed = True
            group.next_flush_ms = at_ms + group.options.group_interval_ms
            if ok:  # resolved alerts leave once every notifier was told (or had nothing to say)
                for fp in [fp for fp, a in group.alerts.items() if a.state is AlertState.RESOLVED]:
                    del group.alerts[fp]
            if not group.alerts:
                del self._groups[key]
        return deliveries

    def _muted(
        self,
        alert: Alert,
        at_ms: int,
        silences: Sequence[Silence],
        firing: Sequence[Mapping[str, str]],
    ) -> bool:
        return any(s.mutes(alert.labels, at_ms) for s in silences) or any(
            i.mutes(alert.labels, firing) for i in self.inhibitions
        )

    def _flush(
        self,
        group: _Group,
        at_ms: int,
        silences: Sequence[Silence],
        inhibiting: Sequence[Mapping[str, str]] = (),
    ) -> tuple[list[Delivery], bool]:
        alerts = [
            a for a in group.alerts.values() if not self._muted(a, at_ms, silences, inhibiting)
        ]
        if not alerts:
            return [], True
        firing = frozenset(a.fingerprint for a in alerts if a.state is AlertState.FIRING)
        resolved = frozenset(a.fingerprint for a in alerts if a.state is AlertState.RESOLVED)
        deliveries, ok = [], True
        for notifier in self.notifiers:
            log_key = (group.key, notifier.name)
            entry = self._log.get(log_key)
            repeat_ms = group.options.repeat_interval_ms
            if not _needs_update(entry, firing, resolved, notifier.send_resolved, at_ms, repeat_ms):
                continue
            to_send = [a for a in alerts if notifier.send_resolved or a.state is AlertState.FIRING]
            if to_send:
                delivery = self._send(notifier, group, to_send, at_ms)
                deliveries.append(delivery)
                if delivery.outcome == "failed":
                    ok = False
                    continue  # not logged: the next flush tries again
            self._log[log_key] = LogEntry(firing, resolved, at_ms)
        return deliveries, ok

    def _send(self, notifier: Notifier, group: _Group, alerts: list[Alert], at_ms: int) -> Delivery:
        ordered = tuple(sorted(alerts, key=lambda a: (a.state is not AlertState.FIRING,
                                                      sorted(a.labels.items()))))  # fmt: skip
        notification = Notification(
            self.receiver, group.key, group.labels, ordered, at_ms,
            self.external_url, self.generator_urls,
        )  # fmt: skip
        fingerprints = tuple(a.fingerprint for a in ordered)
        try:
            attempts = notifier.send(notification)
        except NotifyError as exc:
            return Delivery(at_ms, notifier.kind, notifier.target, group.key,
                            notification.status, fingerprints, "failed", exc.problem)  # fmt: skip
        except Exception as exc:  # a notifier's bug must not stop the rule engine either
            return Delivery(at_ms, notifier.kind, notifier.target, group.key, notification.status,
                            fingerprints, "failed", f"{type(exc).__name__}: {exc}")  # fmt: skip
        return Delivery(at_ms, notifier.kind, notifier.target, group.key, notification.status,
                        fingerprints, "sent", attempts=attempts)  # fmt: skip

    # -- state that survives a restart ---------------------------------------------------------

    def export_log(self) -> list[dict[str, Any]]:
        """The notification log as JSON-ready dicts (see :meth:`restore_log`)."""
        return [
            {"group_key": g, "notifier": n, "firing": sorted(e.firing),
             "resolved": sorted(e.resolved), "at_ms": e.at_ms}
            for (g, n), e in sorted(self._log.items())
        ]  # fmt: skip

    def restore_log(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Reload the notification log, so a restart does not notify again what was sent."""
        for e in entries:
            self._log[(e["group_key"], e["notifier"])] = LogEntry(
                frozenset(e["firing"]), frozenset(e["resolved"]), int(e["at_ms"])
            )
