"""What can go wrong when measuring drift, each failure carrying the values that caused it."""

from __future__ import annotations

from perfml.errors import PerfmlError, UsageError
from perfml.plugins import PluginTakenError, UnknownPluginError


class DriftError(PerfmlError):
    """The root of the drift measures' failures."""


class BadDriftRequestError(DriftError, UsageError):
    """An argument of a drift computation is not one it can take (exit code 2)."""

    def __init__(self, what: str, value: object, expected: str) -> None:
        self.what = what
        self.value = value
        super().__init__(f"{what} {value!r} is not valid: expected {expected}")


class UnknownMeasureError(DriftError, UnknownPluginError):
    """No measure of that name is registered."""


class MeasureTakenError(DriftError, PluginTakenError):
    """Two measures were registered under one name."""


class EmptyReferenceError(DriftError):
    """The reference window holds no value of a feature: there is nothing to compare with."""

    def __init__(self, feature: str, window: str) -> None:
        self.feature = feature
        self.window = window
        super().__init__(
            f"the reference window {window} holds no point of {feature}: drift cannot be "
            "measured against it (choose another reference window)"
        )


class EdgesMismatchError(DriftError):
    """Two histograms binned with different edges cannot be merged or compared."""

    def __init__(self, left: int, right: int) -> None:
        super().__init__(
            f"histograms have different bin edges ({left} and {right} edges): merge or compare "
            "only histograms binned with the same reference edges"
        )


class NoReferenceError(DriftError):
    """A model version does not say which data it was trained on."""

    def __init__(self, ref: str, missing: str) -> None:
        self.ref = ref
        super().__init__(
            f"{ref} records no {missing}: its training window is unknown (pass the reference "
            "window explicitly, e.g. --reference 2024-01-01..2024-04-01)"
        )


class NoThresholdError(DriftError):
    """A model version records no anomaly threshold, so its detections cannot be counted."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(
            f"{ref} records no anomaly threshold (tag or metric 'threshold'): pass one to "
            "measure its precision, recall and F1"
        )
