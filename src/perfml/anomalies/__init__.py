"""The fleet's anomalies: scores as points arrive, the score log, incidents, backfills.

- :class:`LiveScorer` (:mod:`.live`): each new point of a watched metric scored with its
  series' state and learnt; checkpointed; handed to a promoted version without a gap;
- :class:`ScoreLog` (:mod:`.scores`): every score, in Parquet;
- :func:`find_incidents` (:mod:`.report`): anomalous points grouped per entity across its
  metrics, and fleet-wide events as one incident;
- :func:`backfill` (:mod:`.backfill`): score a window of the store with a version.
"""

from perfml.anomalies.backfill import BackfillResult, backfill
from perfml.anomalies.errors import AnomaliesError, CheckpointError, NotScorableError, ScoreLogError
from perfml.anomalies.incidents import FleetIncident, Incident, MetricPart
from perfml.anomalies.live import LiveScorer
from perfml.anomalies.report import Findings, find_incidents
from perfml.anomalies.scores import ScoreLog

__all__ = [
    "AnomaliesError",
    "BackfillResult",
    "CheckpointError",
    "Findings",
    "FleetIncident",
    "Incident",
    "LiveScorer",
    "MetricPart",
    "NotScorableError",
    "ScoreLog",
    "ScoreLogError",
    "backfill",
    "find_incidents",
]
