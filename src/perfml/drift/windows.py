"""Calendar windows in UTC: the periods whose data drift is measured, one against another.

A window is ``[start, end)`` in epoch milliseconds with a label people read in a table:
``monthly`` windows are calendar months (``2026-04``), ``weekly`` ones ISO weeks from Monday
(``2026-W15``), ``daily`` ones UTC days (``2026-04-03``), and ``Nd`` (``7d``, ``30d``) rolling
windows of N days laid back to back *from the end* of the span, so that the latest window is
always the last N days (``2026-03-28+7d``: seven days from 28 March).

>>> [w.label for w in calendar_windows("2024-01-15", "2024-03-02")]
['2024-01', '2024-02', '2024-03']
>>> [w.label for w in calendar_windows("2024-01-01", "2024-01-15", "7d")]
['2024-01-01+7d', '2024-01-08+7d']
>>> between("2024-01-01", "2024-04-01").label
'2024-01-01..2024-04-01'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from perfml.drift.errors import BadDriftRequestError
from perfml.timeparse import parse_instant, to_epoch_ms

CALENDAR = ("monthly", "weekly", "daily")
"""The calendar periods; ``Nd`` (rolling days) is the fourth kind."""
DEFAULT_EVERY = "monthly"
_ROLLING = re.compile(r"^([1-9][0-9]{0,3})d$")
_DAY = timedelta(days=1)


@dataclass(frozen=True, order=True)
class Window:
    """``[start, end)`` in epoch milliseconds, UTC, with its label."""

    start: int
    end: int
    label: str

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise BadDriftRequestError(
                "window", self.label, f"an end after its start ({self.start} >= {self.end} ms)"
            )

    @property
    def start_time(self) -> datetime:
        return datetime.fromtimestamp(self.start / 1000, tz=UTC)

    @property
    def end_time(self) -> datetime:
        return datetime.fromtimestamp(self.end / 1000, tz=UTC)

    def contains(self, epoch_ms: int) -> bool:
        return self.start <= epoch_ms < self.end


def check_every(every: str) -> str:
    """``every`` if it names a kind of window (``monthly``, ``weekly``, ``daily``, ``Nd``)."""
    if every in CALENDAR or _ROLLING.match(every):
        return every
    raise BadDriftRequestError("window kind", every, "monthly, weekly, daily or Nd (e.g. 7d)")


def window_of(instant: datetime | str, every: str = DEFAULT_EVERY) -> Window:
    """The calendar window (``monthly``, ``weekly`` or ``daily``) that holds ``instant``."""
    moment = parse_instant(instant, "instant")
    if check_every(every) not in CALENDAR:
        raise BadDriftRequestError("window kind", every, "monthly, weekly or daily here")
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if every == "daily":
        return _window(day, day + _DAY, f"{day:%Y-%m-%d}")
    if every == "weekly":
        first = day - timedelta(days=day.weekday())
        year, week, _ = first.isocalendar()
        return _window(first, first + 7 * _DAY, f"{year}-W{week:02d}")
    first = day.replace(day=1)
    following = (first + 32 * _DAY).replace(day=1)
    return _window(first, following, f"{first:%Y-%m}")


def calendar_windows(
    start: datetime | str, end: datetime | str, every: str = DEFAULT_EVERY
) -> list[Window]:
    """The windows of kind ``every`` that overlap ``[start, end)``, in order.

    Calendar windows are whole (the first may begin before ``start``, the last end after
    ``end``); rolling ``Nd`` windows end exactly at ``end`` and the first may begin before
    ``start``.
    """
    lower, upper = parse_instant(start, "start"), parse_instant(end, "end")
    if upper <= lower:
        raise BadDriftRequestError("window span", f"{lower}..{upper}", "an end after its start")
    rolling = _ROLLING.match(check_every(every))
    if rolling:
        length = int(rolling.group(1)) * _DAY
        found = []
        stop = upper
        while stop > lower:
            begin = stop - length
            found.append(_window(begin, stop, f"{begin:%Y-%m-%d}+{rolling.group(1)}d"))
            stop = begin
        return found[::-1]
    windows = [window_of(lower, every)]
    while windows[-1].end < to_epoch_ms(upper):
        windows.append(window_of(windows[-1].end_time, every))
    return windows


def between(start: datetime | str, end: datetime | str, label: str | None = None) -> Window:
    """The window ``[start, end)``, labelled ``START..END`` unless ``label`` is given."""
    lower, upper = parse_instant(start, "start"), parse_instant(end, "end")
    return _window(lower, upper, label or f"{_short(lower)}..{_short(upper)}")


def parse_span(text: str) -> Window:
    """``START..END`` (ISO instants or dates) as a window.

    >>> parse_span("2024-01-01..2024-02-01").end_time.isoformat()
    '2024-02-01T00:00:00+00:00'
    """
    first, sep, last = text.partition("..")
    if not sep or not first.strip() or not last.strip():
        raise BadDriftRequestError("window", text, "START..END, e.g. 2024-01-01..2024-04-01")
    return between(first, last)


def _window(start: datetime, end: datetime, label: str) -> Window:
    return Window(to_epoch_ms(start), to_epoch_ms(end), label)


def _short(moment: datetime) -> str:
    if moment.hour == moment.minute == moment.second == moment.microsecond == 0:
        return f"{moment:%Y-%m-%d}"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
