"""What the commands share in parsing their options."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import typer


def parse_pairs(
    items: Sequence[str] | None, option: str, *, as_json: bool = True
) -> dict[str, Any]:
    """``KEY=VALUE`` items of a repeatable ``option``: the value as JSON when it reads as JSON
    (``3``, ``0.5``, ``true``, ``[1, 2]``) and ``as_json``, else the text. A key given twice, or
    an item without ``=`` or a key, is refused naming the option.

    >>> parse_pairs(["window=48", "name=cpu"], "--param")
    {'window': 48, 'name': 'cpu'}
    """
    found: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        if key in found:
            raise typer.BadParameter(f"{key!r} is given twice", param_hint=option)
        found[key] = _json_or_text(value) if as_json else value
    return found


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
