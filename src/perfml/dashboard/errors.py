"""What can go wrong on the dashboard, each failure carrying its values and its HTTP status.

The web adapter maps every :class:`DashboardError` to ``status_code`` and a body
``{"error": str(exc)}`` in one handler; the core raises them without knowing about HTTP.

>>> error = UnknownPageError("jbos", ["jobs", "inference"])
>>> error.status_code, str(error)
(404, "no dashboard page 'jbos'; the pages are: jobs, inference")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from perfml.errors import PerfmlError


class DashboardError(PerfmlError):
    """The root of the dashboard's failures; ``status_code`` is the HTTP status it answers with."""

    status_code: ClassVar[int] = 500


class PanelDefinitionError(DashboardError):
    """A panel or a page is defined in a way that cannot be drawn (caught when defined)."""

    def __init__(self, panel: str, problem: str) -> None:
        self.panel, self.problem = panel, problem
        super().__init__(f"panel {panel!r}: {problem}")


class UnknownPageError(DashboardError):
    """A page was asked for by a name no page has."""

    status_code = 404

    def __init__(self, page: str, known: Sequence[str]) -> None:
        self.page, self.known = page, tuple(known)
        super().__init__(f"no dashboard page {page!r}; the pages are: {', '.join(known)}")


class BadRangeError(DashboardError):
    """The time range of a query is not one: bad numbers, an end before its start, too many
    points."""

    status_code = 400

    def __init__(self, what: str, value: object, problem: str) -> None:
        self.what, self.value, self.problem = what, value, problem
        super().__init__(f"{what} {value!r}: {problem}")


class NotJsonError(DashboardError):
    """A request that writes was not the JSON object it must be."""

    status_code = 400

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
