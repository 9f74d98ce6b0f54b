"""Why a remote-write request was refused, each failure carrying its HTTP status and values.

Every error derives from :class:`RemoteWriteError`, itself a
:class:`~perfml.sources.errors.SourceError`. The receiver answers ``status_code`` and the
message; Prometheus retries 5xx and 429 and drops what a 4xx refused, so a body that can never
be read is a 400 and a receiver that cannot keep up is a 503 with ``Retry-After``:

>>> error = LandingOverloadedError(pending=1_900_000, incoming=200_000, limit=2_000_000)
>>> error.status_code, error.retry_after
(503, 1)
>>> print(error)  # doctest: +NORMALIZE_WHITESPACE
1900000 samples wait to be stored and 200000 more would pass the limit of 2000000
(max_pending_samples): retry later
"""

from __future__ import annotations

from typing import ClassVar

from perfml.sources.errors import SourceError


class RemoteWriteError(SourceError):
    """The root of the remote-write receiver's failures; ``status_code`` is its HTTP answer."""

    status_code: ClassVar[int] = 500


class MalformedWriteError(RemoteWriteError):
    """The body is not a snappy-compressed ``prometheus.WriteRequest``: never retried.

    >>> str(MalformedWriteError("snappy", "missing stream identifier", 120))
    'the body (120 bytes) is not valid snappy (block format): missing stream identifier'
    """

    status_code = 400

    def __init__(self, layer: str, detail: str, size: int) -> None:
        self.layer = layer
        self.detail = detail
        self.size = size
        what = {"snappy": "valid snappy (block format)", "protobuf": "a prometheus.WriteRequest"}
        super().__init__(f"the body ({size} bytes) is not {what.get(layer, layer)}: {detail}")


class UnsupportedWriteError(RemoteWriteError):
    """A header says the body is not remote write 1.0 (snappy, protobuf).

    >>> str(UnsupportedWriteError("Content-Encoding", "gzip", "snappy"))
    "Content-Encoding 'gzip' is not supported: remote write 1.0 sends snappy"
    """

    status_code = 415

    def __init__(self, header: str, value: str, expected: str) -> None:
        self.header = header
        self.value = value
        self.expected = expected
        super().__init__(f"{header} {value!r} is not supported: remote write 1.0 sends {expected}")


class WriteTooLargeError(RemoteWriteError):
    """The body, or its decompressed form, is larger than ``max_body_bytes``.

    >>> str(WriteTooLargeError("the body", 40_000_000, 33_554_432))
    'the body is 40000000 bytes, over the limit of 33554432 (max_body_bytes)'
    """

    status_code = 413

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.what = what
        self.size = size
        self.limit = limit
        super().__init__(f"{what} is {size} bytes, over the limit of {limit} (max_body_bytes)")


class KeepSelectorError(RemoteWriteError):
    """A ``keep`` entry of the settings is not a plain series selector.

    >>> str(KeepSelectorError("rate(x[5m])", "it is a call, not a series selector"))
    "keep selector 'rate(x[5m])' cannot be used: it is a call, not a series selector"
    """

    exit_code = 2
    permanent = True

    def __init__(self, selector: str, problem: str) -> None:
        self.selector = selector
        self.problem = problem
        super().__init__(f"keep selector {selector!r} cannot be used: {problem}")


class LandingOverloadedError(RemoteWriteError):
    """Accepting more would leave more than ``limit`` samples acknowledged but not stored.

    Prometheus retries a 503 after ``Retry-After`` seconds (and backs off), by which time the
    flusher has moved the pending samples into the store.
    """

    status_code = 503

    def __init__(self, pending: int, incoming: int, limit: int, retry_after: int = 1) -> None:
        self.pending = pending
        self.incoming = incoming
        self.limit = limit
        self.retry_after = retry_after
        super().__init__(
            f"{pending} samples wait to be stored and {incoming} more would pass the limit of "
            f"{limit} (max_pending_samples): retry later"
        )


class LandingClosedError(RemoteWriteError):
    """The landing was closed (the receiver is stopping): Prometheus retries elsewhen."""

    status_code = 503

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.retry_after = 1
        super().__init__(f"the landing at {folder} is closed: the receiver is stopping")
