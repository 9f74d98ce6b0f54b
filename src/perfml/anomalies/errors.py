"""What can go wrong scoring the fleet, each failure naming the thing and the value."""

from pathlib import Path

from perfml.errors import PerfmlError, UsageError


class AnomaliesError(PerfmlError):
    """The root of the live loop's, the score log's and the incidents' failures."""


class ScoreLogError(AnomaliesError):
    """The score log's files cannot be used as asked."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(f"score log {path}: {problem}")


class NotScorableError(AnomaliesError, UsageError):
    """A model cannot be scored live or in a backfill as it is (it names no single metric, or
    its version records no threshold): retrying cannot help."""

    permanent = True

    def __init__(self, ref: str, problem: str) -> None:
        self.ref = ref
        super().__init__(f"model {ref} cannot be scored: {problem}")


class CheckpointError(AnomaliesError):
    """A checkpoint of the live states is unreadable; the loop starts from the version."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(f"live checkpoint {path}: {problem}")
