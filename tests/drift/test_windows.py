"""Calendar windows: UTC, [start, end) in epoch ms, labelled for people."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from perfml.drift import between, calendar_windows, parse_span, window_of
from perfml.drift.errors import BadDriftRequestError


def ms(*parts: int) -> int:
    return round(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def test_monthly_windows_are_calendar_months_in_utc() -> None:
    found = calendar_windows("2024-01-31T23:00:00Z", "2024-03-01T00:00:00Z")
    assert [(w.label, w.start, w.end) for w in found] == [
        ("2024-01", ms(2024, 1, 1), ms(2024, 2, 1)),
        ("2024-02", ms(2024, 2, 1), ms(2024, 3, 1)),  # a leap February, end exclusive
    ]
    assert window_of("2024-12-31T23:59:59+00:00").label == "2024-12"
    assert window_of("2025-01-01T00:30:00+01:00").label == "2024-12"  # 23:30 UTC


def test_weekly_windows_are_iso_weeks_from_monday() -> None:
    found = calendar_windows("2024-12-30", "2025-01-08", "weekly")
    assert [w.label for w in found] == ["2025-W01", "2025-W02"]
    assert found[0].start == ms(2024, 12, 30)
    assert found[0].end == ms(2025, 1, 6)


def test_daily_and_rolling_windows() -> None:
    days = calendar_windows("2024-03-30T12:00:00", "2024-04-01T00:00:01", "daily")
    assert [w.label for w in days] == ["2024-03-30", "2024-03-31", "2024-04-01"]
    rolling = calendar_windows("2024-03-01", "2024-03-31", "7d")
    assert rolling[-1].end == ms(2024, 3, 31)  # the latest window is always the last 7 days
    assert [w.label for w in rolling] == [
        "2024-02-25+7d", "2024-03-03+7d", "2024-03-10+7d", "2024-03-17+7d", "2024-03-24+7d",
    ]  # fmt: skip
    assert all(b.start == a.end for a, b in itertools.pairwise(rolling))


def test_spans_and_their_errors() -> None:
    window = parse_span("2024-01-01..2024-04-01T12:00:00Z")
    assert window.label == "2024-01-01..2024-04-01T12:00:00Z"
    assert window.contains(ms(2024, 1, 1))
    assert not window.contains(window.end)
    assert between("2024-01-01", "2024-02-01", label="jan").label == "jan"
    with pytest.raises(BadDriftRequestError, match="'2024-01-01'"):
        parse_span("2024-01-01")
    with pytest.raises(BadDriftRequestError, match="'fortnightly'"):
        calendar_windows("2024-01-01", "2024-02-01", "fortnightly")
    with pytest.raises(BadDriftRequestError, match="end after its start"):
        between("2024-02-01", "2024-01-01")
