"""The shipped rule kinds: what each watches, its parameters, its PromQL and its examples.

One rule of each kind is shipped, named as the kind (:func:`perfml.alerting.rules.default_rules`).
Every expression is over the metric names of DESIGN.md ("One vocabulary for both worlds") —
kube-state-metrics and cAdvisor for jobs, Seldon Core for inference, ``perfml_*`` for perfml's
own — and uses only the PromQL the native evaluator supports: selectors with ``= != =~ !~``,
``[range]``, ``offset``, ``rate``/``increase``/``irate``/``delta``/``*_over_time``, ``time()``,
``absent``, ``histogram_quantile``, ``sum``/``min``/``max``/``avg``/``count`` ``by``/``without``,
arithmetic, comparisons (with ``bool``), ``and``/``or``/``unless`` with ``on``/``ignoring`` and
``group_left``.

Each kind's :meth:`~perfml.alerting.rules.RuleKind.examples` are built from its parameters and
``for``, so a changed or added rule is tested as well as a shipped one.

>>> from perfml.alerting.rules import builtin_kinds
>>> kind = builtin_kinds().get("FeatureDriftHigh")
>>> kind.expr(kind.parse_params("Drift", {"method": "psi", "threshold": 0.2}))
'max by (feature) (perfml_feature_drift{method="psi"}) > 0.2'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar

from pydantic import Field

from perfml.alerting.rules import (
    LABEL_VALUE,
    SERVING_JOB,
    Example,
    ExampleAlert,
    ExampleSeries,
    RuleKind,
    RuleParams,
    Seconds,
    duration,
    matcher,
    number,
    rule_kind,
)

_NS = "perfml"
_SELDON = "seldon_api_executor_server_requests_seconds"
_INFERENCE = {"deployment_name": "perfml", "predictor_name": "cpu"}
_REQUEST = {**_INFERENCE, "predictor_version": "3", "service": "predictions", "method": "infer"}
_POD = {"namespace": _NS, "pod": "train-1"}
_JOB = {"namespace": _NS, "job_name": "demo-1a2b-train"}


def series(name: str, **labels: str) -> str:
    """A series in the notation of :class:`ExampleSeries`.

    >>> series("up", job="perfml-serving", instance="127.0.0.1:8080")
    'up{instance="127.0.0.1:8080",job="perfml-serving"}'
    """
    inner = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name


def steps(span: float) -> int:
    """How many one-minute samples cover ``span`` seconds (the ``N`` of ``1xN``)."""
    return max(1, -(-round(span) // 60))


# -- jobs ---------------------------------------------------------------------------------------


class PendingParams(RuleParams):
    threshold: Seconds = Field(3600.0, gt=0, description="how long a pod may stay Pending")


@rule_kind("JobPendingTooLong")
class JobPendingTooLong(RuleKind[PendingParams]):
    """A pod has waited in ``Pending`` (no capacity, a missing volume or secret) for longer
    than ``threshold``: the rule's ``for`` is the threshold unless it says otherwise."""

    Params = PendingParams
    summary = "Pod {{ $labels.namespace }}/{{ $labels.pod }} is stuck Pending"
    description = (
        "Pod {{ $labels.namespace }}/{{ $labels.pod }} has not started: it waits for capacity, "
        "a volume or a secret."
    )

    def expr(self, params: PendingParams) -> str:
        return 'kube_pod_status_phase{phase="Pending"} == 1'

    def default_for(self, params: PendingParams) -> float:
        return params.threshold

    def examples(self, params: PendingParams, for_: float) -> tuple[Example, ...]:
        span = steps(for_ + 600)
        pending = series("kube_pod_status_phase", phase="Pending", **_POD)
        stuck = ExampleAlert({**_POD, "phase": "Pending"}, 1.0)
        started = steps(for_ / 2)
        return (
            Example("pending past the threshold", (ExampleSeries(pending, f"1x{span}"),),
                    at=span * 60.0, alerts=(stuck,)),
            Example("started before the threshold",
                    (ExampleSeries(pending, f"1x{started} 0x{span}"),), at=span * 60.0),
        )  # fmt: skip


class RunningParams(RuleParams):
    threshold: Seconds = Field(2 * 86400.0, gt=0, description="how long a pod may run")


@rule_kind("JobRunningTooLong")
class JobRunningTooLong(RuleKind[RunningParams]):
    """A pod has been ``Running`` for longer than ``threshold`` (a hang, an endless loop)."""

    Params = RunningParams
    summary = "Pod {{ $labels.namespace }}/{{ $labels.pod }} runs too long"
    description = (
        "Pod {{ $labels.namespace }}/{{ $labels.pod }} has been running for "
        "{{ $value | humanizeDuration }}."
    )

    def expr(self, params: RunningParams) -> str:
        return (
            f"(time() - kube_pod_start_time) > {number(params.threshold)} "
            'and on (namespace, pod) kube_pod_status_phase{phase="Running"} == 1'
        )

    def examples(self, params: RunningParams, for_: float) -> tuple[Example, ...]:
        # The pod started ``threshold`` before time 0, so the input stays short.
        span = steps(for_ + 600)
        start = ExampleSeries(
            series("kube_pod_start_time", **_POD), f"{number(-params.threshold)}x{span}"
        )
        running = series("kube_pod_status_phase", phase="Running", **_POD)
        at = span * 60.0
        return (
            Example("running past the threshold", (start, ExampleSeries(running, f"1x{span}")),
                    at=at, alerts=(ExampleAlert(_POD, at + params.threshold),)),
            Example("started as long ago, no longer running",
                    (start, ExampleSeries(running, f"0x{span}")), at=at),
        )  # fmt: skip


def _job_failed() -> ExampleSeries:
    return ExampleSeries(series("kube_job_failed", condition="true", **_JOB), "1x20")


def _failed_for(reason: str) -> ExampleSeries:
    return ExampleSeries(series("kube_job_status_failed", reason=reason, **_JOB), "1x20")


@rule_kind("JobFailed")
class JobFailed(RuleKind[RuleParams]):
    """A job failed, for whatever reason (``kube_job_failed{condition="true"}``)."""

    summary = "Job {{ $labels.namespace }}/{{ $labels.job_name }} failed"
    description = (
        "Job {{ $labels.namespace }}/{{ $labels.job_name }} failed; its log tells why "
        "(perfml runs logs)."
    )

    def expr(self, params: RuleParams) -> str:
        return 'kube_job_failed{condition="true"} > 0'

    def examples(self, params: RuleParams, for_: float) -> tuple[Example, ...]:
        at = steps(for_ + 300) * 60.0
        succeeded = ExampleSeries(series("kube_job_status_succeeded", **_JOB), "1x20")
        not_failed = ExampleSeries(series("kube_job_failed", condition="false", **_JOB), "0x20")
        failed = ExampleAlert({**_JOB, "condition": "true"}, 1.0)
        return (
            Example("a failed job", (_job_failed(),), at=at, alerts=(failed,)),
            Example("a job that succeeded", (succeeded, not_failed), at=at),
        )


@rule_kind("JobRetriesExhausted")
class JobRetriesExhausted(RuleKind[RuleParams]):
    """A job failed for good: every retry its backoff limit allows failed."""

    severity = "critical"
    summary = "Job {{ $labels.namespace }}/{{ $labels.job_name }} exhausted its retries"
    description = (
        "Job {{ $labels.namespace }}/{{ $labels.job_name }} failed on every attempt its backoff "
        "limit allows; it will not be retried."
    )

    def expr(self, params: RuleParams) -> str:
        return 'kube_job_status_failed{reason="BackoffLimitExceeded"} > 0'

    def examples(self, params: RuleParams, for_: float) -> tuple[Example, ...]:
        at = steps(for_ + 300) * 60.0
        exhausted = ExampleAlert({**_JOB, "reason": "BackoffLimitExceeded"}, 1.0)
        return (
            Example("out of retries", (_failed_for("BackoffLimitExceeded"),), at=at,
                    alerts=(exhausted,)),
            Example("failed past its deadline", (_failed_for("DeadlineExceeded"),), at=at),
        )  # fmt: skip


class ClusterParams(RuleParams):
    threshold: float = Field(0.9, gt=0, description="share of allocatable CPU in use")
    requests_threshold: float = Field(1.0, gt=0, description="share of allocatable requested")
    window: Seconds = Field(300.0, gt=0, description="the rate window of the CPU use")


@rule_kind("ClusterOverloaded")
class ClusterOverloaded(RuleKind[ClusterParams]):
    """The nodes cannot take the work: the CPU or memory requested by pods that are Pending or
    Running is over ``requests_threshold`` of what the nodes can allocate (labelled with that
    ``resource``), or the CPU used over ``window`` is over ``threshold`` of it (no label)."""

    Params = ClusterParams
    for_ = 900.0
    summary = "The cluster is overloaded"
    description = (
        "Pods request or use {{ $value | humanizePercentage }} of the allocatable "
        "{{ $labels.resource }} capacity (no resource named: CPU in use); jobs queue as Pending."
    )

    def expr(self, params: ClusterParams) -> str:
        requested = (
            'sum by (resource) (kube_pod_container_resource_requests{resource=~"cpu|memory"} '
            'and on (namespace, pod) kube_pod_status_phase{phase=~"Pending|Running"} == 1)'
        )
        allocatable = 'sum by (resource) (kube_node_status_allocatable{resource=~"cpu|memory"})'
        used = f"sum(rate(container_cpu_usage_seconds_total[{duration(params.window)}]))"
        cpu = 'sum(kube_node_status_allocatable{resource="cpu"})'
        return (
            f"{requested} / {allocatable} > {number(params.requests_threshold)} "
            f"or {used} / {cpu} > {number(params.threshold)}"
        )

    def examples(self, params: ClusterParams, for_: float) -> tuple[Example, ...]:
        span = steps(params.window + for_ + 600)
        at = span * 60.0
        cores = 4
        node = series("kube_node_status_allocatable", node="runner", resource="cpu", unit="core")
        allocatable = ExampleSeries(node, f"{cores}x{span}")
        container = series("container_cpu_usage_seconds_total", container="train", **_POD)

        def using(share: float) -> ExampleSeries:  # CPU seconds per minute
            return ExampleSeries(container, f"0+{number(share * cores * 60)}x{span}")

        request = series(
            "kube_pod_container_resource_requests",
            container="train", node="runner", resource="cpu", unit="core", **_POD,
        )  # fmt: skip
        phase = series("kube_pod_status_phase", phase="Pending", **_POD)
        over = params.requests_threshold * 2
        requests = (
            allocatable,
            ExampleSeries(request, f"{number(over * cores)}x{span}"),
            ExampleSeries(phase, f"1x{span}"),
        )
        busy = min(params.threshold * 2, 1.0) if params.threshold < 1 else params.threshold * 2
        return (
            Example("CPU in use over the threshold", (allocatable, using(busy)), at=at,
                    alerts=(ExampleAlert({}, busy),)),
            Example("CPU requested over what the nodes have", requests, at=at,
                    alerts=(ExampleAlert({"resource": "cpu"}, over),)),
            Example("CPU in use under the threshold", (allocatable, using(params.threshold / 2)),
                    at=at),
        )  # fmt: skip


# -- inference ----------------------------------------------------------------------------------


class ServiceParams(RuleParams):
    job: str = Field(SERVING_JOB, pattern=LABEL_VALUE, description="the scrape job to watch")


@rule_kind("InferenceServiceDown")
class InferenceServiceDown(RuleKind[ServiceParams]):
    """The inference server does not answer its scrapes, or no target of ``job`` is scraped."""

    Params = ServiceParams
    severity = "critical"
    for_ = 60.0
    summary = "Inference service {{ $labels.job }} is down"
    description = (
        "Target {{ $labels.instance }} of {{ $labels.job }} does not answer (none named: no "
        "target is scraped at all); models are not served."
    )

    def expr(self, params: ServiceParams) -> str:
        job = matcher("job", params.job)
        return f"up{{{job}}} == 0 or absent(up{{{job}}})"

    def examples(self, params: ServiceParams, for_: float) -> tuple[Example, ...]:
        span = steps(for_ + 300)
        at = span * 60.0
        target = {"job": params.job, "instance": "127.0.0.1:8080"}
        up = series("up", **target)
        other = series("up", job=f"{params.job}-other", instance="127.0.0.1:9")
        return (
            Example("a target down", (ExampleSeries(up, f"0x{span}"),), at=at,
                    alerts=(ExampleAlert(target, 0.0),)),
            Example("no target scraped", (ExampleSeries(other, f"1x{span}"),), at=at,
                    alerts=(ExampleAlert({"job": params.job}, 1.0),)),
            Example("the target up", (ExampleSeries(up, f"1x{span}"),), at=at),
        )  # fmt: skip


class LatencyParams(RuleParams):
    threshold: Seconds = Field(0.5, gt=0, description="the slowest acceptable answer")
    quantile: float = Field(0.99, gt=0, lt=1, description="which answers: 0.99 for p99")
    window: Seconds = Field(300.0, gt=0, description="the rate window")


@rule_kind("InferenceLatencyHigh")
class InferenceLatencyHigh(RuleKind[LatencyParams]):
    """Inference is slow: the ``quantile`` (p99) of the time to answer over ``window`` is over
    ``threshold`` seconds, per deployment and predictor."""

    Params = LatencyParams
    for_ = 900.0
    summary = "Inference on {{ $labels.deployment_name }}/{{ $labels.predictor_name }} is slow"
    description = (
        "The slowest answers of {{ $labels.deployment_name }}/{{ $labels.predictor_name }} "
        "take {{ $value | humanizeDuration }}."
    )

    def expr(self, params: LatencyParams) -> str:
        return (
            f"histogram_quantile({number(params.quantile)}, sum by (le, deployment_name, "
            f"predictor_name) (rate({_SELDON}_bucket[{duration(params.window)}]))) "
            f"> {number(params.threshold)}"
        )

    def examples(self, params: LatencyParams, for_: float) -> tuple[Example, ...]:
        span = steps(params.window + for_ + 600)
        at = span * 60.0
        t = params.threshold
        bounds = (t / 2, t, 2 * t, float("inf"))

        def answered_within(bound: float) -> tuple[ExampleSeries, ...]:  # one a second
            found = []
            for le in bounds:
                label = "+Inf" if le == float("inf") else number(le)
                name = series(f"{_SELDON}_bucket", le=label, code="200", **_REQUEST)
                found.append(ExampleSeries(name, f"0+{60 if le >= bound else 0}x{span}"))
            return tuple(found)

        slow = t + t * params.quantile  # every answer between t and 2t
        return (
            Example("answers slower than the threshold", answered_within(2 * t), at=at,
                    alerts=(ExampleAlert(_INFERENCE, slow),)),
            Example("answers faster than the threshold", answered_within(t / 2), at=at),
        )  # fmt: skip


class ErrorRateParams(RuleParams):
    threshold: float = Field(0.05, gt=0, lt=1, description="share of requests failing")
    window: Seconds = Field(300.0, gt=0, description="the rate window")


@rule_kind("InferenceErrorRateHigh")
class InferenceErrorRateHigh(RuleKind[ErrorRateParams]):
    """Inference fails: the share of requests answered with a 5xx status over ``window`` is
    over ``threshold``, per deployment and predictor (a client's 4xx does not count)."""

    Params = ErrorRateParams
    severity = "critical"
    for_ = 300.0
    summary = "Inference on {{ $labels.deployment_name }}/{{ $labels.predictor_name }} fails"
    description = (
        "{{ $value | humanizePercentage }} of the requests to {{ $labels.deployment_name }}/"
        "{{ $labels.predictor_name }} fail with a server error."
    )

    def expr(self, params: ErrorRateParams) -> str:
        window = duration(params.window)
        by = "sum by (deployment_name, predictor_name)"
        return (
            f'{by} (rate({_SELDON}_count{{code=~"5.."}}[{window}])) '
            f"/ {by} (rate({_SELDON}_count[{window}])) > {number(params.threshold)}"
        )

    def examples(self, params: ErrorRateParams, for_: float) -> tuple[Example, ...]:
        span = steps(params.window + for_ + 600)
        at = span * 60.0

        def requests(errors_per_mille: int, code: str) -> tuple[ExampleSeries, ...]:
            ok = series(f"{_SELDON}_count", code="200", **_REQUEST)
            failed = series(f"{_SELDON}_count", code=code, **_REQUEST)
            return (
                ExampleSeries(ok, f"0+{1000 - errors_per_mille}x{span}"),
                ExampleSeries(failed, f"0+{errors_per_mille}x{span}"),
            )

        many = min(1000, int(params.threshold * 2000) + 1)
        few = int(params.threshold * 500)
        return (
            Example("many server errors", requests(many, "503"), at=at,
                    alerts=(ExampleAlert(_INFERENCE, many / 1000),)),
            Example("few server errors", requests(few, "500"), at=at),
            Example("many client errors", requests(many, "400"), at=at),
        )  # fmt: skip


class LoadParams(RuleParams):
    window: Seconds = Field(600.0, gt=0, description="how long a failed load is alerted on")


@rule_kind("ModelLoadFailed")
class ModelLoadFailed(RuleKind[LoadParams]):
    """The inference server failed to load a model version within ``window`` (it keeps serving
    the version it had): ``perfml_model_load_failures_total{model,version}`` went up."""

    Params = LoadParams
    severity = "critical"
    summary = "Model {{ $labels.model }} version {{ $labels.version }} failed to load"
    description = (
        "The inference server could not load version {{ $labels.version }} of model "
        "{{ $labels.model }}; it keeps serving the version it had."
    )

    def expr(self, params: LoadParams) -> str:
        return f"increase(perfml_model_load_failures_total[{duration(params.window)}]) > 0"

    def examples(self, params: LoadParams, for_: float) -> tuple[Example, ...]:
        span = steps(params.window + for_ + 300)
        name = series("perfml_model_load_failures_total", model="cpu", version="4")
        at = span * 60.0
        before = span - steps(params.window) // 2
        return (
            Example("a load failed", (ExampleSeries(name, f"0x{before} 1x{span - before}"),),
                    at=at, alerts=(ExampleAlert({"model": "cpu", "version": "4"}, 1.0),)),
            Example("no load failed", (ExampleSeries(name, f"0x{span}"),), at=at),
        )  # fmt: skip


# -- data and model quality ---------------------------------------------------------------------


class DriftParams(RuleParams):
    method: Annotated[str, Field(pattern=LABEL_VALUE)] = "kl"
    threshold: float = Field(0.1, gt=0, description="the largest acceptable drift")


@rule_kind("FeatureDriftHigh")
class FeatureDriftHigh(RuleKind[DriftParams]):
    """A feature moved away from its reference window: its drift measured by ``method`` (KL
    divergence by default) is over ``threshold`` (the largest over models, per feature)."""

    Params = DriftParams
    summary = "Feature {{ $labels.feature }} drifted"
    description = (
        "The drift of feature {{ $labels.feature }} is {{ $value | humanize }}: the model may "
        "no longer fit the data; retraining is due."
    )

    def expr(self, params: DriftParams) -> str:
        drift = f"perfml_feature_drift{{{matcher('method', params.method)}}}"
        return f"max by (feature) ({drift}) > {number(params.threshold)}"

    def examples(self, params: DriftParams, for_: float) -> tuple[Example, ...]:
        span = steps(for_ + 300)
        at = span * 60.0

        def drift(method: str, value: float) -> ExampleSeries:
            name = series("perfml_feature_drift", feature="cpu", method=method)
            return ExampleSeries(name, f"{number(value)}x{span}")

        high, other = 2 * params.threshold, "psi" if params.method != "psi" else "kl"
        return (
            Example("drift over the threshold", (drift(params.method, high),), at=at,
                    alerts=(ExampleAlert({"feature": "cpu"}, high),)),
            Example("drift under the threshold, another method's over",
                    (drift(params.method, params.threshold / 2), drift(other, 2 * high)), at=at),
        )  # fmt: skip


class QualityParams(RuleParams):
    metric: Annotated[str, Field(pattern=LABEL_VALUE)] = "f1"
    threshold: float = Field(0.5, gt=0, description="the lowest acceptable quality")


@rule_kind("ModelQualityDegraded")
class ModelQualityDegraded(RuleKind[QualityParams]):
    """A model's quality on labelled feedback (``metric``, F1 by default) fell under
    ``threshold``."""

    Params = QualityParams
    summary = "Model {{ $labels.model }} version {{ $labels.version }} lost quality"
    description = (
        "The {{ $labels.metric }} of model {{ $labels.model }} version {{ $labels.version }} "
        "fell to {{ $value | humanize }} on labelled feedback."
    )

    def expr(self, params: QualityParams) -> str:
        quality = f"perfml_model_quality{{{matcher('metric', params.metric)}}}"
        return f"{quality} < {number(params.threshold)}"

    def examples(self, params: QualityParams, for_: float) -> tuple[Example, ...]:
        span = steps(for_ + 300)
        at = span * 60.0
        labels = {"model": "cpu", "version": "3", "metric": params.metric}
        name = series("perfml_model_quality", **labels)
        low = params.threshold / 2
        return (
            Example("quality under the threshold", (ExampleSeries(name, f"{number(low)}x{span}"),),
                    at=at, alerts=(ExampleAlert(labels, low),)),
            Example("quality at the threshold",
                    (ExampleSeries(name, f"{number(params.threshold)}x{span}"),), at=at),
        )  # fmt: skip


# -- the fleet's anomalies ----------------------------------------------------------------------
#
# The live scorer exports ``perfml_anomaly_score{metric,entity,model}`` (the latest score of each
# series), ``perfml_anomaly_threshold{model}`` (a point is anomalous when its score is at or over
# it) and ``perfml_fleet_entities{model}`` (how many entities the model scores). A large fleet
# exports only the series near or over the threshold, so the rules count what is over it and
# never what is missing. At scale N scorers each export their share: the threshold is taken once
# per model (``max``), the fleet summed, and scrape labels (``job``, ``instance``) dropped, so an
# alert stays the same alert when its entity moves to another scorer.

_SCORE = "perfml_anomaly_score"
_THRESHOLD = "max by (model) (perfml_anomaly_threshold)"
_FLEET = "sum by (model) (perfml_fleet_entities)"
_OVER = f"{_SCORE} >= on (model) group_left {_THRESHOLD}"
"""The series at or over their model's threshold."""
_ANOMALOUS_ENTITIES = f"count by (model) (count by (model, entity) ({_OVER}))"
"""How many distinct entities of each model have a series at or over the threshold."""


def _as_label(label: str, vector: str) -> str:
    """``vector`` (one value per model) as a label of each model, value 1, for ``group_left``
    to copy onto an alert whose annotations print it."""
    return f'count_values by (model) ("{label}", {vector})'


def _anomaly_series(
    span: int, threshold: float, fleet: int, scores: Mapping[str, float]
) -> tuple[ExampleSeries, ...]:
    """The threshold and fleet size of model ``cpu`` and the scores of its series, ``scores``
    being ``{"entity/metric": score}``; the other entities of the fleet export no score."""
    found = [
        ExampleSeries(
            series("perfml_anomaly_threshold", model="cpu"), f"{number(threshold)}x{span}"
        ),
        ExampleSeries(series("perfml_fleet_entities", model="cpu"), f"{fleet}x{span}"),
    ]
    for key, score in scores.items():
        entity, metric = key.split("/")
        name = series(_SCORE, entity=entity, metric=metric, model="cpu")
        found.append(ExampleSeries(name, f"{number(score)}x{span}"))
    return tuple(found)


@rule_kind("AnomalyDetected")
class AnomalyDetected(RuleKind[RuleParams]):
    """An entity is anomalous: a metric of it scores at or over the threshold of the model
    scoring it. One alert per entity and metric, labelled ``entity``, ``metric`` and ``model``,
    valued by the score; the notifications are grouped by entity, so a host with three
    anomalous metrics is one message listing the three.

    ``for`` is ``0s``: the threshold already is the decision (chosen on a labelled window), a
    point arrives every scrape (5 minutes) and the gauge holds its score until the next one, so
    waiting would only delay every alert by a point and miss the one-point spikes the detector
    was calibrated to flag. The threshold is carried for the annotations only (a hidden label),
    so a version promoted with another threshold does not make new alerts."""

    summary = "{{ $labels.entity }} is anomalous: {{ $labels.metric }}"
    description = (
        "{{ $labels.metric }} of {{ $labels.entity }} scores {{ $value }}, at or over the "
        "threshold {{ $labels.threshold }} of model {{ $labels.model }}."
    )
    more_annotations: ClassVar[Mapping[str, str]] = {
        "score": "{{ $value }}",
        "threshold": "{{ $labels.threshold }}",
    }
    hidden_labels = ("threshold",)
    group_by = ("alertname", "entity")

    def expr(self, params: RuleParams) -> str:
        return (
            f"max by (entity, metric, model) ({_OVER}) "
            f"* on (model) group_left (threshold) {_as_label('threshold', _THRESHOLD)}"
        )

    def examples(self, params: RuleParams, for_: float) -> tuple[Example, ...]:
        span = steps(for_ + 300)
        at = span * 60.0
        scores = {"host-1/cpu_util": 0.95, "host-1/mem_util": 0.8, "host-2/cpu_util": 0.5}

        def alert(metric: str, score: float) -> ExampleAlert:
            labels = {"entity": "host-1", "metric": metric, "model": "cpu", "threshold": "0.8"}
            return ExampleAlert(labels, score)

        return (
            Example("metrics of a host at and over the threshold",
                    _anomaly_series(span, 0.8, 10, scores), at=at,
                    alerts=(alert("cpu_util", 0.95), alert("mem_util", 0.8))),
            Example("every score under the threshold",
                    _anomaly_series(span, 0.96, 10, scores), at=at),
            Example("no score exported", _anomaly_series(span, 0.8, 10, {}), at=at),
        )  # fmt: skip


class StormParams(RuleParams):
    min_entities: int = Field(3, ge=1, description="the fewest anomalous entities of a storm")
    fraction: float = Field(
        0.2, gt=0, le=1, description="the smallest share of the fleet anomalous in a storm"
    )


@rule_kind("FleetAnomalyStorm")
class FleetAnomalyStorm(RuleKind[StormParams]):
    """Many entities are anomalous at once, a fleet-wide event: at least ``min_entities``
    distinct entities of a model score at or over its threshold, and they are at least
    ``fraction`` of the entities it scores (``perfml_fleet_entities``). One alert per model,
    valued by that share; while it fires, the model's ``AnomalyDetected`` alerts are not
    notified, so the event pages once, not once per host. Its ``for`` is ``AnomalyDetected``'s
    (``0s``): a storm that waited would let every host page before it."""

    Params = StormParams
    severity = "critical"
    summary = "Anomaly storm on model {{ $labels.model }}"
    description = (
        "{{ $labels.anomalous }} entities scored by model {{ $labels.model }}, "
        "{{ $value | humanizePercentage }} of its fleet, are anomalous at once."
    )
    more_annotations: ClassVar[Mapping[str, str]] = {
        "entities": "{{ $labels.anomalous }}",
        "fraction": "{{ $value }}",
    }
    hidden_labels = ("anomalous",)
    inhibits = ("AnomalyDetected",)
    inhibit_equal = ("model",)

    def expr(self, params: StormParams) -> str:
        share = f"{_ANOMALOUS_ENTITIES} / on (model) {_FLEET}"
        return (
            f"({share} >= {number(params.fraction)} "
            f"and on (model) {_ANOMALOUS_ENTITIES} >= {params.min_entities}) "
            f"* on (model) group_left (anomalous) {_as_label('anomalous', _ANOMALOUS_ENTITIES)}"
        )

    def examples(self, params: StormParams, for_: float) -> tuple[Example, ...]:
        span = steps(for_ + 300)
        at = span * 60.0

        def anomalous(count: int, fleet: int) -> tuple[ExampleSeries, ...]:
            # Two metrics of each anomalous host, one of them under the threshold, and a host
            # under it; the rest of the fleet exports nothing.
            scores = {f"host-{i}/cpu_util": 0.9 for i in range(count)}
            scores.update({f"host-{i}/mem_util": 0.2 for i in range(count)})
            scores["host-quiet/cpu_util"] = 0.3
            return _anomaly_series(span, 0.8, fleet, scores)

        fleet = max(10, 2 * params.min_entities)
        count = fleet // 2 if params.fraction <= 0.5 else fleet
        few = params.min_entities - 1
        few_of = max(few, 1, int(few / params.fraction))  # a share large enough
        big_fleet = int(params.min_entities / params.fraction) + 1  # a share too small
        storm = ExampleAlert({"model": "cpu", "anomalous": str(count)}, count / fleet)
        return (
            Example(f"{count} of {fleet} entities anomalous", anomalous(count, fleet), at=at,
                    alerts=(storm,)),
            Example(f"{few} of {few_of} entities anomalous: too few", anomalous(few, few_of),
                    at=at),
            Example(f"{params.min_entities} of {big_fleet} entities anomalous: too small a share",
                    anomalous(params.min_entities, big_fleet), at=at),
        )  # fmt: skip
