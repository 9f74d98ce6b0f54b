"""The root of perfml's exceptions.

Every part defines one root exception deriving from :class:`PerfmlError` and a subclass per
failure whose constructor takes the offending values and builds the message. The CLI prints
``str(error)`` as one line and exits with :attr:`PerfmlError.exit_code`.
"""


class PerfmlError(Exception):
    """A failure perfml can explain in one line to the person who caused it."""

    exit_code: int = 1


class UsageError(PerfmlError):
    """The command was asked for something it cannot do as asked (exit code 2)."""

    exit_code = 2
