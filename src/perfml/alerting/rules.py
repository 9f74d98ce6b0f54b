"""Alert rules as data: a kind with parameters, labels and annotations, and the settings that
change them.

Every part of the lifecycle is watched by a :class:`Rule`; each renders to a Prometheus alerting
rule (:meth:`Rule.to_prometheus`) over the metric names of DESIGN.md, and perfml evaluates the
same PromQL natively (:mod:`perfml.promql`). What a rule watches is its *kind*, a
plugin (a :class:`RuleKind` subclass registered with :func:`rule_kind`; the shipped ones are in
:mod:`perfml.alerting.rule_kinds`) with typed parameters and its PromQL.

A rule's ``labels`` carry ``severity`` (``info``, ``warning`` or ``critical``) and ``team``;
its ``annotations`` a ``summary``, a ``description`` and a ``runbook_url``. Annotations are
templates in the subset both Prometheus and perfml expand (:mod:`perfml.alerting.templates`):
``{{ $labels.NAME }}``, ``{{ $value }}`` and ``{{ $value | humanize }}``, ``humanizeDuration``,
``humanizePercentage`` (also ``humanize1024``); anything else is refused when the rule is
defined. Labels are literal.

>>> rule = Rule.define("CpuJobsStuck", kind_name="JobPendingTooLong",
...                    params={"threshold": "4h"}, labels={"severity": "critical"})
>>> rule.expr
'kube_pod_status_phase{phase="Pending"} == 1'
>>> prom = rule.to_prometheus()
>>> prom["for"], prom["labels"]
('4h', {'severity': 'critical', 'team': 'perfml'})

:func:`rules_from_settings` builds the rules of ``perfml.yaml`` (``monitoring:``): one shipped
rule per kind, changed by name, new ones added with a name and a kind, some disabled.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from perfml.alerting.errors import AlertingError
from perfml.alerting.templates import TemplateError, check
from perfml.config import MonitoringSettings, Settings
from perfml.errors import UsageError
from perfml.plugins import PluginTakenError, Registry, UnknownPluginError
from perfml.timeparse import format_duration, parse_duration

SEVERITIES = ("info", "warning", "critical")
"""The values of the ``severity`` label, least to most urgent."""
SERVING_JOB = "perfml-serving"
"""The scrape job of perfml's inference server (``up{job="perfml-serving"}``)."""
JOBS_JOB = "perfml-jobs"
"""The scrape job of the job metrics (``perfml runs serve-metrics``)."""
LIVE_JOB = "perfml-live"
"""The scrape job of the fleet's scorer on a cluster (``perfml live``)."""
DEFAULT_TEAM = "perfml"
DEFAULT_RUNBOOKS = "https://perfml.readthedocs.io/en/latest/runbooks.html"
"""The runbooks page; a rule's ``runbook_url`` is this with ``#<kind, lowercase>``."""
REQUIRED_ANNOTATIONS = ("summary", "description", "runbook_url")

# -- errors -------------------------------------------------------------------------------------


class RuleError(AlertingError, UsageError):
    """An alert rule cannot be built as written."""


def _at(where: str) -> str:
    return f"{where}: " if where else ""


class UnknownRuleKindError(RuleError, UnknownPluginError):
    """No kind of that name is registered."""


class RuleKindTakenError(RuleError, PluginTakenError):
    """Two kinds were registered under one name."""


class BadRuleParamError(RuleError):
    """A parameter of a rule is unknown or has a bad value."""

    def __init__(self, rule: str, param: str, value: object, problem: str, where: str = "") -> None:
        self.rule, self.param, self.value = rule, param, value
        super().__init__(f"{_at(where)}rule {rule}: parameter {param} = {value!r}: {problem}")


class BadRuleError(RuleError):
    """A rule's name, duration, label or annotation is unusable."""

    def __init__(self, rule: str, key: str, value: object, problem: str, where: str = "") -> None:
        self.rule, self.key, self.value, self.problem = rule, key, value, problem
        super().__init__(f"{_at(where)}rule {rule}: {key} = {value!r}: {problem}")


class UnknownRuleError(RuleError):
    """Settings name a rule that does not exist."""

    def __init__(self, name: str, where: str, known: list[str], hint: str = "") -> None:
        self.name, self.where = name, where
        super().__init__(
            f"{where} = {name!r}: no such rule{hint} (rules: {', '.join(sorted(known))})"
        )


class DuplicateRuleError(RuleError):
    """Two entries of the settings define or change the same rule."""

    def __init__(self, name: str, where: str, first: str) -> None:
        self.name, self.where = name, where
        super().__init__(f"{where} = {name!r}: rule {name} is already given at {first}")


# -- parameters ---------------------------------------------------------------------------------


def _seconds(value: object) -> object:
    if isinstance(value, str):
        try:
            return parse_duration(value).total_seconds()
        except ValueError:
            raise ValueError(
                "not a duration: write it as Prometheus does, e.g. 30s, 5m, 1h"
            ) from None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


Seconds = Annotated[float, BeforeValidator(_seconds)]
"""A duration in seconds, written ``30m``, ``2d`` or as a number of seconds."""
LABEL_VALUE = r"^[A-Za-z0-9_.:-]+$"
"""What a label value given as a parameter may hold."""


class RuleParams(BaseModel):
    """The parameters of one kind: validated, immutable, unknown names refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# -- examples: input on which a kind fires and stays quiet --------------------------------------


@dataclass(frozen=True)
class ExampleSeries:
    """One input series in ``promtool test rules`` notation: ``series`` is
    ``name{label="value",...}``; ``values`` the expanding notation, one sample per interval
    from time 0 (``1x60`` is 61 samples of 1, ``0+5x10`` counts up by 5, ``_x3`` skips 3)."""

    series: str
    values: str


@dataclass(frozen=True)
class ExampleAlert:
    """An alert an example expects: the labels the expression gives, and its value."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Example:
    """Input series and the alerts a rule fires on them ``at`` seconds after time 0 (none: it
    stays quiet), samples ``interval`` seconds apart. Kinds give them; ``promtool test rules``
    and the native evaluator are both held to them."""

    description: str
    series: tuple[ExampleSeries, ...]
    at: float
    alerts: tuple[ExampleAlert, ...] = ()
    interval: float = 60.0

    @property
    def fires(self) -> bool:
        return bool(self.alerts)


# -- PromQL text --------------------------------------------------------------------------------


def number(value: float) -> str:
    """A number as PromQL and label values write it, without a trailing ``.0``.

    >>> number(172800.0), number(0.5), number(1e-3)
    ('172800', '0.5', '0.001')
    """
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def duration(seconds: float) -> str:
    """Seconds as a Prometheus duration (``3600`` → ``1h``, ``0`` → ``0s``)."""
    return format_duration(timedelta(seconds=seconds))


def matcher(label: str, value: str) -> str:
    """``label="value"``, the value quoted as PromQL quotes strings."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{label}="{escaped}"'


# -- kinds and their registry -------------------------------------------------------------------

P = TypeVar("P", bound=RuleParams)


class RuleKind(Generic[P]):
    """The base of every kind of alert rule.

    A kind declares its ``Params``, renders PromQL for them (:meth:`expr`), and states the
    defaults of the rule shipped for it: ``severity``, ``for_`` and ``keep_firing_for``
    (seconds; :meth:`default_for` may derive ``for`` from the parameters), a ``summary`` and a
    ``description`` (templates). :meth:`examples` gives input on which it fires and on which it
    stays quiet, at least one of each.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[RuleParams]] = RuleParams
    severity: ClassVar[str] = "warning"
    for_: ClassVar[float] = 0.0
    keep_firing_for: ClassVar[float] = 0.0
    summary: ClassVar[str] = ""
    description: ClassVar[str] = ""
    more_annotations: ClassVar[Mapping[str, str]] = {}
    """Annotations of the shipped rule besides the summary, the description and the runbook."""
    hidden_labels: ClassVar[tuple[str, ...]] = ()
    """Labels of the expression's result that only the annotations read: the rule sets them
    empty, which drops a label from the alert (in Prometheus as in perfml), so a value carried
    for the reader (a threshold) never makes a new alert when it changes."""
    group_by: ClassVar[tuple[str, ...]] = ()
    """How notifications of its alerts are grouped, when not as ``monitoring.notifications``
    says: the rule gets a route of its own (:mod:`perfml.alerting.alertmanager`)."""
    inhibits: ClassVar[tuple[str, ...]] = ()
    """Kinds whose alerts are not notified while an alert of this kind fires with the same
    values of :attr:`inhibit_equal`: one page for an event, not one per thing it touches."""
    inhibit_equal: ClassVar[tuple[str, ...]] = ()

    def expr(self, params: P) -> str:
        """The PromQL of a rule of this kind with ``params``."""
        raise NotImplementedError

    def default_for(self, params: P) -> float:
        """How long the expression must hold before the alert fires, unless the rule says."""
        return self.for_

    def examples(self, params: P, for_: float) -> tuple[Example, ...]:
        """Input on which a rule of this kind (``params``, ``for_``) fires, and stays quiet."""
        return ()

    def parse_params(self, rule: str, given: Mapping[str, Any], where: str = "") -> P:
        """``given`` validated as this kind's parameters, or :class:`BadRuleParamError`."""
        try:
            params: P = self.Params.model_validate(dict(given))  # type: ignore[assignment]
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(part) for part in first["loc"]) or "?"
            if first["type"] == "extra_forbidden":
                known = ", ".join(self.Params.model_fields) or "none"
                problem = f"unknown parameter of {self.name} (its parameters: {known})"
            else:
                problem = first["msg"].removeprefix("Value error, ")
            raise BadRuleParamError(rule, param, first.get("input"), problem, where) from None
        return params

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"<rule kind {self.name}>"


K = TypeVar("K", bound=type[RuleKind[Any]])
KindRegistry = Registry[RuleKind[Any]]
"""Rule kinds by name: one instance of each kind."""


def kind_registry() -> KindRegistry:
    """A fresh, empty registry of rule kinds (a test or a plugin's own).

    >>> kinds = kind_registry()
    >>> @rule_kind("Down", kinds)
    ... class Down(RuleKind[RuleParams]):
    ...     def expr(self, params: RuleParams) -> str:
    ...         return "up == 0"
    >>> kinds.get("Down").expr(RuleParams())
    'up == 0'
    >>> kinds.get("Up")
    Traceback (most recent call last):
    ...
    perfml.alerting.rules.UnknownRuleKindError: unknown rule kind 'Up' (known: Down)
    """
    return Registry("rule kind", unknown=UnknownRuleKindError, taken=RuleKindTakenError)


KINDS: KindRegistry = Registry(
    "rule kind",
    unknown=UnknownRuleKindError,
    taken=RuleKindTakenError,
    builtins="perfml.alerting.rule_kinds",
)
"""The default registry: the shipped kinds (registered on first use), and any
:func:`rule_kind` adds."""


def rule_kind(name: str, registry: KindRegistry | None = None) -> Callable[[K], K]:
    """Class decorator: register a kind as ``name`` (its alert name) in ``registry`` (default
    :data:`KINDS`); the registry holds one instance of it."""

    def add(cls: K) -> K:
        cls.name = name
        (KINDS if registry is None else registry).add(name, cls())
        return cls

    return add


def builtin_kinds() -> KindRegistry:
    """:data:`KINDS`, where the shipped kinds are."""
    return KINDS


# -- rules --------------------------------------------------------------------------------------

_ALERT_NAME = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Rule:
    """One alert rule: its ``name`` (the alert's), ``kind`` and typed ``params``, how long the
    condition must hold (``for_``) and the alert outlive it (``keep_firing_for``), in seconds,
    ``labels``, ``annotations`` and whether it is ``enabled``.

    Build one with :meth:`define`, which fills in the kind's defaults; the constructor checks
    what it is given, so an invalid rule never exists.
    """

    name: str
    kind: RuleKind[Any]
    params: RuleParams
    for_: float = 0.0
    keep_firing_for: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    enabled: bool = True

    def __post_init__(self) -> None:
        name = self.name
        if not _ALERT_NAME.match(name):
            raise BadRuleError(
                name, "name", name, "not a valid alert name ([A-Za-z_:][A-Za-z0-9_:]*)"
            )
        if not isinstance(self.params, self.kind.Params):
            raise BadRuleError(name, "params", self.params, f"not {self.kind.name} parameters")
        for key in ("for_", "keep_firing_for"):
            seconds = getattr(self, key)
            if seconds < 0:
                raise BadRuleError(name, key.rstrip("_"), seconds, "must not be negative")
        for label, value in self.labels.items():
            _check_label_name(name, "label", label)
            if label == "alertname":
                raise BadRuleError(name, "labels.alertname", value, "is the rule's name")
            if "{{" in value:
                raise BadRuleError(name, f"labels.{label}", value, "labels are literal")
        severity = self.labels.get("severity")
        if severity not in SEVERITIES:
            raise BadRuleError(
                name, "labels.severity", severity, f"must be one of {', '.join(SEVERITIES)}"
            )
        if not self.labels.get("team"):
            raise BadRuleError(name, "labels.team", self.labels.get("team"), "must be given")
        for key in REQUIRED_ANNOTATIONS:
            if not self.annotations.get(key):
                raise BadRuleError(name, f"annotations.{key}", None, "must be given")
        for key, text in self.annotations.items():
            _check_label_name(name, "annotation", key)
            try:
                check(text)
            except TemplateError as exc:
                raise BadRuleError(name, f"annotations.{key}", text, exc.problem) from None

    @classmethod
    def define(
        cls,
        name: str,
        kind: RuleKind[Any] | None = None,
        *,
        kind_name: str | None = None,
        kinds: KindRegistry | None = None,
        params: RuleParams | Mapping[str, Any] | None = None,
        for_: float | None = None,
        keep_firing_for: float | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        enabled: bool = True,
        team: str = DEFAULT_TEAM,
        runbooks: str = DEFAULT_RUNBOOKS,
        where: str = "",
    ) -> Rule:
        """A rule of ``kind`` (or the kind called ``kind_name`` in ``kinds``; default: the
        name's) with the kind's defaults for what is not given: severity, ``team``, ``for``,
        ``keep_firing_for``, the summary, the description (and the kind's other annotations),
        a runbook in ``runbooks``, and the kind's hidden labels set empty."""
        if kind is None:
            kind = (kinds or builtin_kinds()).get(kind_name or name, where)
        if isinstance(params, RuleParams):
            typed = params
        else:
            typed = kind.parse_params(name, params or {}, where)
        try:
            return cls(
                name=name,
                kind=kind,
                params=typed,
                for_=kind.default_for(typed) if for_ is None else for_,
                keep_firing_for=kind.keep_firing_for
                if keep_firing_for is None
                else keep_firing_for,
                labels={
                    "severity": kind.severity,
                    "team": team,
                    **dict.fromkeys(kind.hidden_labels, ""),
                    **(labels or {}),
                },
                annotations={
                    "summary": kind.summary,
                    "description": kind.description,
                    "runbook_url": f"{runbooks}#{kind.name.lower()}",
                    **kind.more_annotations,
                    **(annotations or {}),
                },
                enabled=enabled,
            )
        except BadRuleError as exc:
            if not where:
                raise
            raise BadRuleError(exc.rule, exc.key, exc.value, exc.problem, where) from None

    @property
    def severity(self) -> str:
        return self.labels["severity"]

    @property
    def expr(self) -> str:
        """The PromQL of the rule."""
        return self.kind.expr(self.params)

    def examples(self) -> tuple[Example, ...]:
        """Input on which this rule fires and stays quiet (see :class:`Example`)."""
        return self.kind.examples(self.params, self.for_)

    def to_prometheus(self) -> dict[str, Any]:
        """The rule as one Prometheus alerting rule (durations as ``1h``, keys sorted)."""
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": duration(self.for_),
            "keep_firing_for": duration(self.keep_firing_for),
            "labels": dict(sorted(self.labels.items())),
            "annotations": dict(sorted(self.annotations.items())),
        }


def _check_label_name(rule: str, what: str, name: str) -> None:
    if not _LABEL_NAME.match(name) or name.startswith("__"):
        raise BadRuleError(rule, f"{what} name", name, "not a valid label name")


# -- from the settings --------------------------------------------------------------------------


def default_rules(
    kinds: KindRegistry | None = None, team: str = DEFAULT_TEAM, runbooks: str = DEFAULT_RUNBOOKS
) -> list[Rule]:
    """One rule per kind, named as its kind, with the kind's defaults."""
    return [
        Rule.define(kind.name, kind, team=team, runbooks=runbooks)
        for kind in (kinds or builtin_kinds())
    ]


def _seconds_of(text: str | None, rule: str, key: str, where: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text, key, allow_zero=True).total_seconds()
    except UsageError as exc:  # config.py validated it already; kept for settings built in code
        raise BadRuleError(rule, key, text, str(exc), where) from None


def rules_from_settings(
    settings: Settings | MonitoringSettings,
    kinds: KindRegistry | None = None,
    include_disabled: bool = False,
) -> list[Rule]:
    """The rules of ``monitoring:``: the shipped ones, changed and added to by
    ``monitoring.rules``, those in ``monitoring.disabled`` switched off (left out unless
    ``include_disabled``). Shipped rules come first, in kind order, then the added ones.

    Raises :class:`UnknownRuleError` for an unknown name in ``disabled`` or a change to an
    unknown rule without ``kind``, :class:`UnknownRuleKindError`, :class:`DuplicateRuleError`
    for a rule given twice, and :class:`BadRuleParamError` / :class:`BadRuleError` for a bad
    value; each names the key (``monitoring.rules[1]``) and the value.
    """
    monitoring = settings.monitoring if isinstance(settings, Settings) else settings
    registry = kinds or builtin_kinds()
    shipped = {kind.name: kind for kind in registry}
    given: dict[str, str] = {}
    rules: dict[str, Rule] = {}
    for kind in registry:
        rules[kind.name] = Rule.define(
            kind.name, kind, team=monitoring.team, runbooks=monitoring.runbooks
        )
    for index, entry in enumerate(monitoring.rules):
        where = f"monitoring.rules[{index}]"
        if entry.name in given:
            raise DuplicateRuleError(entry.name, f"{where}.name", given[entry.name])
        given[entry.name] = f"{where}.name"
        if entry.name in shipped:
            kind = shipped[entry.name]
            if entry.kind is not None and entry.kind != kind.name:
                raise BadRuleError(
                    entry.name, "kind", entry.kind,
                    f"a shipped rule is of kind {kind.name}; give a new rule a name of its own",
                    where,
                )  # fmt: skip
        elif entry.kind is None:
            raise UnknownRuleError(
                entry.name, f"{where}.name", list(rules), "; to add one, give its kind too"
            )
        else:
            kind = registry.get(entry.kind, f"{where}.kind")
        rules[entry.name] = Rule.define(
            entry.name,
            kind,
            params=entry.params,
            for_=_seconds_of(entry.for_, entry.name, "for", where),
            keep_firing_for=_seconds_of(
                entry.keep_firing_for, entry.name, "keep_firing_for", where
            ),
            labels=entry.labels,
            annotations=entry.annotations,
            enabled=True if entry.enabled is None else entry.enabled,
            team=monitoring.team,
            runbooks=monitoring.runbooks,
            where=where,
        )
    for index, name in enumerate(monitoring.disabled):
        if name not in rules:
            raise UnknownRuleError(name, f"monitoring.disabled[{index}]", list(rules))
        rules[name] = replace(rules[name], enabled=False)
    return [rule for rule in rules.values() if rule.enabled or include_disabled]
