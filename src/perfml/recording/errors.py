"""The root of the recording part's failures: scraping, recording, flushing, the service."""

from __future__ import annotations

from perfml.errors import PerfmlError


class RecordingError(PerfmlError):
    """The root of the recording failures (scrape targets, the recorder, the service)."""
