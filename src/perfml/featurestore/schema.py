"""The one shape every series takes on its way into and out of the feature store.

A point is ``(metric, entity, ts, value)``: ``metric`` names what is measured (``cpu_util``),
``entity`` what it is measured on (a host, a VM, a service), ``ts`` a UTC instant at
millisecond precision and ``value`` a finite float. ``(metric, entity, ts)`` is the key. Labels
(``{"instance": "10.0.0.7:9100", "job": "node"}``) belong to a series, ``(metric, entity)``, and
are kept beside the points rather than repeated on each of them.
"""

import re

import pyarrow as pa

TIMESTAMP_TYPE = pa.timestamp("ms", tz="UTC")

LONG_SCHEMA = pa.schema(
    [
        pa.field("metric", pa.string(), nullable=False),
        pa.field("entity", pa.string(), nullable=False),
        pa.field("ts", TIMESTAMP_TYPE, nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)
"""Long format: one row per point. What sources produce and ``FeatureStore.write`` takes."""

READ_SCHEMA = pa.schema(
    [
        pa.field("metric", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("entity", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("ts", TIMESTAMP_TYPE, nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)
"""What reads return: the long format with ``metric`` and ``entity`` dictionary-encoded.

A fleet's millions of points name a few thousand series; dictionaries keep those names once
(pandas sees them as categoricals). ``write`` takes either spelling.
"""

METRIC_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
"""Metric names are Prometheus names without the colon (reserved there for recording rules)."""

SeriesKey = tuple[str, str]
"""``(metric, entity)``: the identity of one series."""
