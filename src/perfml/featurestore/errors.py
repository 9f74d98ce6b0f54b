"""What can go wrong in the feature store, each failure carrying the values that caused it."""

from perfml.errors import PerfmlError


class FeatureStoreError(PerfmlError):
    """The root of the feature store's failures."""


class InvalidPointsError(FeatureStoreError):
    """Points handed to the store break its schema; nothing of the write was kept."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}; nothing was written")


class MissingColumnsError(FeatureStoreError):
    """A table lacks columns the long format needs."""

    def __init__(self, where: str, missing: list[str], present: list[str]) -> None:
        self.missing = missing
        super().__init__(
            f"{where}: missing column(s) {', '.join(repr(c) for c in missing)} "
            f"(found {', '.join(repr(c) for c in present) or 'none'}); nothing was written"
        )


class CorruptStoreError(FeatureStoreError):
    """The store's manifest cannot be read as a manifest of this format."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(f"feature store manifest {path} is unreadable: {reason}")


class BadQueryError(FeatureStoreError):
    """A read asked for something the store cannot answer as asked."""

    def __init__(self, what: str, value: object, expected: str) -> None:
        self.what = what
        self.value = value
        super().__init__(f"{what} {value!r} is not valid: expected {expected}")
