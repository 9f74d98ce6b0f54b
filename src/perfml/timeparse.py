"""Durations and instants as people write them on a command line or in ``perfml.yaml``.

>>> parse_duration("5m")
datetime.timedelta(seconds=300)
>>> parse_duration("1h30m")
datetime.timedelta(seconds=5400)
>>> parse_duration("30m1h")
Traceback (most recent call last):
...
perfml.timeparse.BadDurationError: invalid duration '30m1h': expected <integer><unit> pairs ...
>>> parse_instant("2024-01-31").isoformat()
'2024-01-31T00:00:00+00:00'
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from perfml.errors import UsageError

_UNITS = {
    "y": timedelta(days=365),
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
}
# Prometheus's grammar: <integer><unit> pairs, each unit at most once, largest first.
_DURATION = re.compile("".join(rf"(?:(\d+){unit})?" for unit in _UNITS))


class BadDurationError(UsageError, ValueError):
    """A duration is not in Prometheus's syntax (``30s``, ``5m``, ``1h30m``, ``2d``)."""

    def __init__(self, what: str, text: str) -> None:
        super().__init__(
            f"invalid {what} {text!r}: expected <integer><unit> pairs from the largest unit "
            "down, units y, w, d, h, m, s, ms (e.g. 30s, 5m, 1h30m, 2d)"
        )


class BadInstantError(UsageError):
    """An instant is neither RFC 3339 / ISO 8601 nor Unix seconds."""

    def __init__(self, what: str, text: str) -> None:
        super().__init__(
            f"{what} {text!r} is not a time: write it as 2024-01-31, 2024-01-31T12:00:00Z "
            "or Unix seconds"
        )


def parse_duration(
    text: str | timedelta, what: str = "duration", allow_zero: bool = False
) -> timedelta:
    """A duration in Prometheus's syntax; positive unless ``allow_zero`` (then ``0`` too)."""
    if isinstance(text, timedelta):
        total = text
    elif allow_zero and text == "0":
        total = timedelta(0)
    else:
        match = _DURATION.fullmatch(text)
        if not text or match is None:
            raise BadDurationError(what, text)
        total = sum(
            (
                _UNITS[unit] * int(count)
                for unit, count in zip(_UNITS, match.groups(), strict=True)
                if count is not None
            ),
            timedelta(),
        )
    if total < timedelta(0) or (total == timedelta(0) and not allow_zero):
        raise BadDurationError(what, str(text))
    return total


def format_duration(delta: timedelta) -> str:
    """The shortest Prometheus spelling of ``delta`` (``timedelta(hours=1)`` → ``1h``)."""
    ms = round(delta.total_seconds() * 1000)
    parts = []
    for unit in ("d", "h", "m", "s", "ms"):
        size = round(_UNITS[unit].total_seconds() * 1000)
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(parts) or "0s"


def parse_instant(text: str | datetime, what: str = "time") -> datetime:
    """An aware UTC datetime; naive input is taken as UTC."""
    if isinstance(text, datetime):
        moment = text
    else:
        cleaned = text.strip()
        try:
            moment = datetime.fromtimestamp(float(cleaned), tz=UTC)
        except ValueError:
            try:
                moment = datetime.fromisoformat(cleaned.replace("Z", "+00:00"))
            except ValueError:
                raise BadInstantError(what, text) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def to_epoch_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch of an aware datetime."""
    return round(moment.timestamp() * 1000)
