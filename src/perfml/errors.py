"""The root of perfml's exceptions.

Every part defines one root exception deriving from :class:`PerfmlError` and a subclass per
failure whose constructor takes the offending values and builds the message. The CLI prints
``str(error)`` as one line and exits with :attr:`PerfmlError.exit_code`.

Some failures are *permanent*: doing the same thing again cannot succeed (a refused
credential, a usage error), so a runner must not retry them. A class says so with
``permanent = True``; :func:`is_permanent` also counts any perfml error carrying an HTTP
``status`` of 401 or 403, the refused credentials of every HTTP client:

>>> is_permanent(UsageError("no such detector")), is_permanent(PerfmlError("disk full"))
(True, False)
"""

from typing import ClassVar

REFUSED_CREDENTIALS = frozenset({401, 403})
"""HTTP statuses that mean the credentials are missing or wrong: retrying cannot help."""


class PerfmlError(Exception):
    """A failure perfml can explain in one line to the person who caused it."""

    exit_code: int = 1
    permanent: ClassVar[bool] = False
    """True when retrying the same call cannot succeed; runners then fail at once."""


class UsageError(PerfmlError):
    """The command was asked for something it cannot do as asked (exit code 2)."""

    exit_code = 2
    permanent = True


def is_permanent(error: BaseException) -> bool:
    """Whether ``error`` is a perfml failure that no retry can fix."""
    if not isinstance(error, PerfmlError):
        return False
    return error.permanent or getattr(error, "status", None) in REFUSED_CREDENTIALS
