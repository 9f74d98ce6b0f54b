"""Splitting PromQL text into tokens, and PromQL's duration literals.

>>> [(t.kind, t.text) for t in tokenize('rate(x{a="b"}[5m])')][:6]
[('IDENT', 'rate'), ('OP', '('), ('IDENT', 'x'), ('OP', '{'), ('IDENT', 'a'), ('OP', '=')]
>>> duration_ms("1h30m"), format_duration(5_400_000)
(5400000, '1h30m')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from perfml.promql.errors import PromQLParseError

TokenKind = Literal["IDENT", "NUMBER", "DURATION", "STRING", "OP", "EOF"]

DURATION_UNITS_MS: dict[str, int] = {
    "y": 365 * 86_400_000,
    "w": 7 * 86_400_000,
    "d": 86_400_000,
    "h": 3_600_000,
    "m": 60_000,
    "s": 1_000,
    "ms": 1,
}
_DURATION_FULL = re.compile("".join(rf"(?:(\d+){unit})?" for unit in DURATION_UNITS_MS))
_DURATION_TOKEN = re.compile(r"(?:\d+(?:ms|[smhdwy]))+(?![A-Za-z0-9_])")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_OPERATORS = ("==", "!=", "=~", "!~", ">=", "<=", *"=><+-*/%^(){}[],:@")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


@dataclass(frozen=True)
class Token:
    """One lexical unit: its kind, its text (strings unquoted) and its offset in the input."""

    kind: TokenKind
    text: str
    pos: int


def duration_ms(text: str) -> int | None:
    """The length in milliseconds of a PromQL duration (``5m``, ``1h30m``), or None if invalid."""
    match = _DURATION_FULL.fullmatch(text)
    if not text or match is None:
        return None
    return sum(
        int(amount) * unit_ms
        for amount, unit_ms in zip(match.groups(), DURATION_UNITS_MS.values(), strict=True)
        if amount is not None
    )


def format_duration(ms: int) -> str:
    """A millisecond count as Prometheus writes a duration: ``5m``, ``1h30m``, ``0s``."""
    if ms == 0:
        return "0s"
    parts = []
    for unit, unit_ms in DURATION_UNITS_MS.items():
        amount, ms = divmod(ms, unit_ms)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)


def _unquote(text: str, start: int, body: str, quote: str) -> str:
    if quote == "`":
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        code = body[i + 1] if i + 1 < len(body) else ""
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            i += 2
        elif code in ("\\", quote):
            out.append(code)
            i += 2
        elif code in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[code]
            digits = body[i + 2 : i + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise PromQLParseError(text, start + 1 + i, f"invalid escape \\{code}{digits}")
            out.append(chr(int(digits, 16)))
            i += 2 + width
        elif code.isdigit():
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or not all(c in "01234567" for c in digits):
                raise PromQLParseError(text, start + 1 + i, f"invalid octal escape \\{digits}")
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise PromQLParseError(text, start + 1 + i, f"unknown escape sequence \\{code}")
    return "".join(out)


def _string_end(text: str, start: int) -> int:
    quote = text[start]
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and quote != "`":
            i += 2
            continue
        if char == quote:
            return i
        if char == "\n" and quote != "`":
            break
        i += 1
    raise PromQLParseError(text, start, f"unterminated string starting with {quote}")


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an ``EOF`` token; raises on an unknown character."""
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
            continue
        if char == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        if char in "\"'`":
            end = _string_end(text, i)
            tokens.append(Token("STRING", _unquote(text, i, text[i + 1 : end], char), i))
            i = end + 1
            continue
        if char.isdigit() or (char == "." and text[i + 1 : i + 2].isdigit()):
            duration = _DURATION_TOKEN.match(text, i)
            if duration is not None:
                tokens.append(Token("DURATION", duration.group(), i))
                i = duration.end()
                continue
            number = _NUMBER.match(text, i)
            if number is not None:
                tokens.append(Token("NUMBER", number.group(), i))
                i = number.end()
                continue
        ident = _IDENT.match(text, i)
        if ident is not None:
            tokens.append(Token("IDENT", ident.group(), i))
            i = ident.end()
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                tokens.append(Token("OP", op, i))
                i += len(op)
                break
        else:
            raise PromQLParseError(text, i, f"unexpected character {char!r}")
    tokens.append(Token("EOF", "", len(text)))
    return tokens
