"""What can go wrong with detectors and their saved models."""

import os

from perfml.errors import PerfmlError, UsageError
from perfml.plugins import PluginTakenError, UnknownPluginError


class DetectorError(PerfmlError):
    """The root of the detectors' failures."""


class UnknownDetectorError(DetectorError, UnknownPluginError):
    """No detector of that name is registered."""


class DetectorNameTakenError(DetectorError, PluginTakenError):
    """Two detector classes were registered under one name."""


class BadParamsError(DetectorError, UsageError):
    def __init__(self, detector: str, problems: str) -> None:
        super().__init__(f"detector {detector!r}: {problems}")


class BadInputError(DetectorError):
    """A frame handed to a detector lacks what it needs (a ``ts`` column, finite values, ...)."""

    def __init__(self, detector: str, problem: str) -> None:
        super().__init__(f"detector {detector!r}: {problem}")


class NotFittedError(DetectorError):
    def __init__(self, detector: str) -> None:
        super().__init__(f"detector {detector!r} must be fitted before it scores")


class ArtifactError(DetectorError):
    """A saved model cannot be loaded: corrupt, truncated, foreign or from another version."""

    def __init__(self, path: os.PathLike[str] | str, problem: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {problem}")
