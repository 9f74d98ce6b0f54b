"""What can go wrong with the metadata database."""

from __future__ import annotations

from perfml.errors import PerfmlError


class MetadataError(PerfmlError):
    """The root of the metadata database's failures."""


class SchemaVersionError(MetadataError):
    """The database holds a part's tables at a schema version this perfml does not use."""

    def __init__(self, url: str, component: str, found: int, expected: int) -> None:
        self.component = component
        self.found = found
        self.expected = expected
        super().__init__(
            f"metadata database {url} has the {component} tables at schema version {found}; "
            f"this perfml uses {expected}"
        )
