"""What can go wrong while serving, each failure carrying its HTTP status and its values.

The HTTP layer maps every :class:`ServingError` to ``status_code`` and the protocol's error body
``{"error": str(exc)}`` in one handler; the data plane raises them without knowing about HTTP.

>>> err = ModelNotFoundError("cpu", "7")
>>> err.status_code, str(err)
(404, "model 'cpu' version 7 is not served")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar

from perfml.errors import PerfmlError, UsageError


class ServingError(PerfmlError):
    """The root of the serving failures; ``status_code`` is the HTTP status it answers with."""

    status_code: ClassVar[int] = 500
    headers: ClassVar[Mapping[str, str]] = MappingProxyType({})
    """HTTP headers the answer carries (``WWW-Authenticate`` for 401)."""


class InvalidRequestError(ServingError):
    """The request cannot be read: malformed JSON, or data that contradicts its own shape."""

    status_code = 400

    def __init__(self, problem: str) -> None:
        super().__init__(problem)


class UnauthorizedError(ServingError):
    status_code = 401
    headers = MappingProxyType({"WWW-Authenticate": "Bearer"})

    def __init__(self) -> None:
        super().__init__("missing bearer token: send 'Authorization: Bearer <token>'")


class ForbiddenError(ServingError):
    status_code = 403

    def __init__(self) -> None:
        super().__init__("the bearer token is not valid")


class ModelNotFoundError(ServingError):
    status_code = 404

    def __init__(self, name: str, version: str | None = None) -> None:
        self.name = name
        self.version = version
        what = f"model {name!r}" + (f" version {version}" if version is not None else "")
        super().__init__(f"{what} is not served")


class PayloadTooLargeError(ServingError):
    status_code = 413

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"request body is larger than the limit of {limit} bytes")


class UnprocessableInputError(ServingError):
    """The request is well formed but its inputs do not fit the model."""

    status_code = 422

    def __init__(self, problem: str, input_name: str | None = None) -> None:
        self.input_name = input_name
        super().__init__(f"input {input_name!r}: {problem}" if input_name else problem)


class ModelNotReadyError(ServingError):
    """The model is known but no version of it is loaded (yet)."""

    status_code = 503

    def __init__(self, name: str, reason: str = "") -> None:
        self.name = name
        super().__init__(f"model {name!r} is not ready" + (f": {reason}" if reason else ""))


class FeedbackUnavailableError(ServingError):
    status_code = 503

    def __init__(self) -> None:
        super().__init__("feedback cannot be stored: this server has no feature store")


class InferenceFailedError(ServingError):
    """The model raised while scoring valid input: a server-side failure."""

    status_code = 500

    def __init__(self, name: str, version: int, problem: str) -> None:
        super().__init__(f"model {name!r} version {version} failed: {problem}")


class UnknownServedModelError(ServingError, UsageError):
    """Asked to serve a model the registry does not have: the server does not start."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = list(known)
        listed = ", ".join(known) or "none yet (perfml train registers one)"
        super().__init__(f"no model {name!r} in the registry to serve (its models: {listed})")
