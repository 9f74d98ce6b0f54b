"""What can go wrong in the model registry, each failure carrying the values that caused it."""

from perfml.errors import PerfmlError, UsageError


class RegistryError(PerfmlError):
    """The root of the registry's failures."""


class InvalidNameError(RegistryError, UsageError):
    def __init__(self, what: str, name: str, rule: str) -> None:
        self.name = name
        super().__init__(f"{what} name {name!r} is not valid: {rule}")


class NotFoundError(RegistryError):
    def __init__(self, what: str, name: str, hint: str = "") -> None:
        self.name = name
        super().__init__(f"{what} {name!r} not found" + (f" ({hint})" if hint else ""))


class ArtifactIntegrityError(RegistryError):
    """An artifact's bytes no longer match the digest recorded when it was registered."""

    def __init__(self, where: str, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"artifact {where} is corrupt: its sha256 is {actual}, the registry recorded "
            f"{expected}; refusing to load it"
        )


class ArtifactStoreError(RegistryError):
    """The artifact store refused or failed an operation."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"artifact store {where}: {problem}")


class ArtifactAuthError(ArtifactStoreError):
    """The artifact store refused the credentials: no retry can fix that."""

    permanent = True
