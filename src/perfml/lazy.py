"""A package's public names, imported from their modules only when first used.

A part's ``__init__`` declares its whole public API, but importing one light module of it (a
pipeline step's worker importing ``perfml.pipelines.dsl``, an error class) must not import the
rest (DuckDB, SQLAlchemy). The package lists each name's module; :func:`exports` gives it the
module-level ``__getattr__`` that imports it on first use.

>>> getattr_ = exports("perfml.example", {"Path": "pathlib"})
>>> getattr_("Path").__name__
'Path'
>>> getattr_("nope")
Traceback (most recent call last):
...
AttributeError: module 'perfml.example' has no attribute 'nope'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: each of ``names`` (name → module) from its module."""

    def getattr_(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return getattr_
