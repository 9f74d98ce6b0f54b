"""The fleet's anomalies: scores as points arrive, the score log, incidents, backfills.

- :class:`LiveScorer` (:mod:`.live`): each new point of a watched metric scored with its
  series' state and learnt; checkpointed; handed to a promoted version without a gap;
- :class:`ScoreLog` (:mod:`.scores`): every score, in Parquet;
- :func:`find_incidents` (:mod:`.report`): anomalous points grouped per entity across its
  metrics, and fleet-wide events as one incident;
- :func:`backfill` (:mod:`.backfill`): score a window of the store with a version;
- :class:`VerdictLog` (:mod:`.verdicts`): operators' verdicts on incidents, written through
  to labelled windows and silences; :func:`review_queue` and :func:`label_coverage`
  (:mod:`.review`): what to label next, and where labels are too few.
"""

from perfml.anomalies.backfill import BackfillResult, backfill
from perfml.anomalies.errors import AnomaliesError, CheckpointError, NotScorableError, ScoreLogError
from perfml.anomalies.incidents import FleetIncident, Incident, MetricPart
from perfml.anomalies.live import LiveScorer
from perfml.anomalies.report import Findings, find_incidents
from perfml.anomalies.review import Coverage, ReviewItem, label_coverage, review_queue
from perfml.anomalies.scores import ScoreLog
from perfml.anomalies.verdicts import (
    Verdict,
    VerdictError,
    VerdictKind,
    VerdictLog,
    VerdictTakenError,
    incident_at,
)

__all__ = [
    "AnomaliesError",
    "BackfillResult",
    "CheckpointError",
    "Coverage",
    "Findings",
    "FleetIncident",
    "Incident",
    "LiveScorer",
    "MetricPart",
    "NotScorableError",
    "ReviewItem",
    "ScoreLog",
    "ScoreLogError",
    "Verdict",
    "VerdictError",
    "VerdictKind",
    "VerdictLog",
    "VerdictTakenError",
    "backfill",
    "find_incidents",
    "incident_at",
    "label_coverage",
    "review_queue",
]
