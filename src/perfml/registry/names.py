"""Names of models and aliases, and references to versions (``name``, ``name@alias``,
``name:7``).

>>> parse_ref("cpu-anomaly@production")
Ref(model='cpu-anomaly', alias='production', version=None)
>>> parse_ref("cpu-anomaly:7")
Ref(model='cpu-anomaly', alias=None, version=7)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from perfml.registry.errors import InvalidNameError

MAX_NAME = 128
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_RULE = (
    f"1 to {MAX_NAME} characters, letters, digits, '.', '_' and '-', starting with a letter or "
    "digit, no '..'"
)


def check_name(what: str, name: str) -> str:
    """``name`` if it is a valid model, alias or tag name, else :class:`InvalidNameError`.

    Names become file and repository path segments, so nothing that could climb out of a
    folder (``..``, ``/``) or hide (a leading dot) is allowed.
    """
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise InvalidNameError(what, str(name), _RULE)
    if not _NAME.match(name) or ".." in name:
        raise InvalidNameError(what, name, _RULE)
    return name


@dataclass(frozen=True)
class Ref:
    """A reference to one version: by alias, by number, or (neither) the latest."""

    model: str
    alias: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        if self.alias is not None:
            return f"{self.model}@{self.alias}"
        if self.version is not None:
            return f"{self.model}:{self.version}"
        return self.model


def parse_ref(text: str) -> Ref:
    """Read ``name``, ``name@alias`` or ``name:version``."""
    if "@" in text:
        model, alias = text.split("@", 1)
        return Ref(check_name("model", model), alias=check_name("alias", alias))
    if ":" in text:
        model, number = text.rsplit(":", 1)
        if not number.isdigit() or int(number) < 1:
            raise InvalidNameError("version", number, "a version is a whole number from 1")
        return Ref(check_name("model", model), version=int(number))
    return Ref(check_name("model", text))
