"""The failures of :mod:`perfml.sources`: one root, a subclass per way input can be wrong.

Each constructor takes the offending values and builds a one-line message that names them, so
the person who fed perfml a bad file is told which file, which line and which value.
"""

from pathlib import Path

from perfml.errors import PerfmlError


class SourceError(PerfmlError):
    """A source could not be read, written or generated as asked."""


class NabFormatError(SourceError):
    """A file of a NAB corpus (a series CSV or the windows JSON) is not in NAB's format.

    ``line`` is 1-based and counts every physical line of the file, the header included, so an
    editor opened at that line shows the culprit. ``field`` and ``value`` are set when one value
    is to blame:

    >>> str(NabFormatError("ec2.csv", "is not a number", line=17, field="value", value="abc"))
    "ec2.csv line 17: value 'abc' is not a number"
    >>> str(NabFormatError("ec2.csv", "header has no column 'value'", line=1))
    "ec2.csv line 1: header has no column 'value'"
    """

    def __init__(
        self,
        path: str | Path,
        problem: str,
        *,
        line: int | None = None,
        field: str | None = None,
        value: object = None,
    ) -> None:
        self.path = Path(path)
        self.problem = problem
        self.line = line
        self.field = field
        self.value = value
        where = f"{path} line {line}" if line is not None else str(path)
        what = f"{field} {value!r} {problem}" if field is not None else problem
        super().__init__(f"{where}: {what}")


class MetricNameError(SourceError):
    """A name meant to become a metric is not a valid metric name (``[a-zA-Z_][a-zA-Z0-9_]*``).

    >>> str(MetricNameError("real-AWS", "the category of data/real-AWS/a.csv"))
    "metric name 'real-AWS' (the category of data/real-AWS/a.csv) is not [a-zA-Z_][a-zA-Z0-9_]*"
    """

    def __init__(self, name: str, origin: str) -> None:
        self.name = name
        self.origin = origin
        super().__init__(f"metric name {name!r} ({origin}) is not [a-zA-Z_][a-zA-Z0-9_]*")


class FleetConfigError(SourceError):
    """:func:`perfml.sources.fleet.generate_fleet` or ``write_fleet`` was asked for the impossible.

    >>> str(FleetConfigError("hosts", 0, "must be at least 1"))
    'hosts=0 must be at least 1'
    """

    exit_code = 2

    def __init__(self, parameter: str, value: object, problem: str) -> None:
        self.parameter = parameter
        self.value = value
        self.problem = problem
        super().__init__(f"{parameter}={value!r} {problem}")
