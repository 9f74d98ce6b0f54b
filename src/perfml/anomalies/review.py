"""What to label next, and where labels are too few to judge a model.

:func:`review_queue` ranks the incidents nobody has labelled — no verdict, no labelled window
of their entity and metrics over their span — by how much a verdict would tell: the nearer an
incident's peak score is to its threshold, the less sure the detector was, so the first in the
queue are those whose peak is the smallest share over the threshold (a verdict there moves
the threshold most).

:func:`label_coverage` counts the labels per metric and host group: the labelled anomaly
windows in the store (whatever wrote them: verdicts, feedback, imported labels) and the false
alarms of the verdict log (a reviewed span without an anomaly). A series' host group is its
``group_label`` label in the store (``group`` by default), ``all`` for a series without one.
A group has *enough* labels when it has at least ``min_windows`` anomaly windows — the gate and
``perfml_model_quality`` judge nothing without one — and ``min_labels`` labels in all.

>>> from perfml.anomalies.incidents import MetricPart
>>> near = Incident("a", 0, 1, 0, 0.55, (MetricPart("cpu", "m", 0.55, 0, 1, 0.5),))
>>> far = Incident("b", 0, 1, 0, 0.95, (MetricPart("cpu", "m", 0.95, 0, 1, 0.5),))
>>> [(item.incident.entity, round(item.margin, 2)) for item in rank([far, near])]
[('a', 0.1), ('b', 0.9)]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from perfml.anomalies.incidents import Incident
from perfml.anomalies.verdicts import Verdict, VerdictKind
from perfml.featurestore import FeatureStore, LabelWindow

ALL_HOSTS = "all"
"""The host group of a series without the group label."""
DEFAULT_GROUP_LABEL = "group"
DEFAULT_MIN_LABELS = 5
DEFAULT_MIN_WINDOWS = 1


@dataclass(frozen=True)
class ReviewItem:
    """An unlabelled incident and how far over its threshold its peak went (a share of it)."""

    incident: Incident
    margin: float


def margin(incident: Incident) -> float:
    """How far the incident's peak metric went over its threshold, as a share of the threshold
    (of 1 when the threshold is 0)."""
    top = incident.metrics[0]
    scale = abs(top.threshold) or 1.0
    return max(0.0, top.peak_score - top.threshold) / scale


def rank(incidents: Iterable[Incident]) -> list[ReviewItem]:
    """``incidents`` nearest their threshold first (then the newest)."""
    items = [ReviewItem(i, margin(i)) for i in incidents if i.metrics]
    return sorted(items, key=lambda item: (item.margin, -item.incident.start_ms))


def review_queue(
    incidents: Iterable[Incident],
    verdicts: Mapping[str, Verdict],
    windows: Sequence[LabelWindow],
    limit: int | None = None,
) -> list[ReviewItem]:
    """The incidents without a verdict (``verdicts`` by incident id) or an overlapping
    labelled window of theirs, ranked (:func:`rank`), the first ``limit``."""
    spans: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for w in windows:
        spans[(w.entity, w.metric)].append((w.start, w.end))

    def labelled(incident: Incident) -> bool:
        return any(
            lo <= incident.end_ms and incident.start_ms <= hi
            for part in incident.metrics
            for lo, hi in spans.get((incident.entity, part.metric), ())
        )

    open_ = [i for i in incidents if i.id not in verdicts and not labelled(i)]
    ranked = rank(open_)
    return ranked if limit is None else ranked[:limit]


@dataclass(frozen=True)
class Coverage:
    """The labels of one metric in one host group."""

    metric: str
    group: str
    series: int
    labelled_series: int
    """Series with at least one label (window or false alarm)."""
    anomaly_windows: int
    false_alarms: int
    expected_changes: int
    enough: bool

    @property
    def labels(self) -> int:
        return self.anomaly_windows + self.false_alarms


def label_coverage(
    store: FeatureStore,
    verdicts: Iterable[Verdict],
    *,
    metrics: Sequence[str] | None = None,
    group_label: str = DEFAULT_GROUP_LABEL,
    min_labels: int = DEFAULT_MIN_LABELS,
    min_windows: int = DEFAULT_MIN_WINDOWS,
) -> list[Coverage]:
    """The labels per metric and host group of the store's series (see the module), sorted by
    metric and group; the groups with too few are ``enough=False``."""
    groups: dict[tuple[str, str], str] = {}
    members: dict[tuple[str, str], set[str]] = defaultdict(set)
    for metric, entity, labels in store.series():
        if metrics is not None and metric not in metrics:
            continue
        group = labels.get(group_label) or ALL_HOSTS
        groups[(metric, entity)] = group
        members[(metric, group)].add(entity)
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    labelled: dict[tuple[str, str], set[str]] = defaultdict(set)

    def count(metric: str, entity: str, what: str) -> None:
        group = groups.get((metric, entity))
        if group is None:
            return  # a label of a series the store holds no points of: nothing to judge
        counts[(metric, group)][what] += 1
        if what != "expected":
            labelled[(metric, group)].add(entity)

    for w in store.windows(metrics):
        count(w.metric, w.entity, "windows")
    for verdict in verdicts:
        what = {VerdictKind.FALSE_ALARM: "false", VerdictKind.EXPECTED_CHANGE: "expected"}
        if verdict.kind in what:
            for metric in verdict.metrics:
                count(metric, verdict.entity, what[verdict.kind])
    rows = []
    for (metric, group), entities in sorted(members.items()):
        found = counts[(metric, group)]
        windows, false = found["windows"], found["false"]
        rows.append(
            Coverage(
                metric=metric,
                group=group,
                series=len(entities),
                labelled_series=len(labelled[(metric, group)]),
                anomaly_windows=windows,
                false_alarms=false,
                expected_changes=found["expected"],
                enough=windows >= min_windows and windows + false >= min_labels,
            )
        )
    return rows
