"""Tokenizer shared by the infix readers: numbers, identifiers and punctuation, with positions."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import ParseError

NUM, ID, SYM, END = "num", "id", "sym", "end"

# Longest symbols first so `**` wins over `*`.
_SYMBOLS = ("**", "+", "-", "*", "/", "^", "(", ")", ",", "[", "]", ":")
_NUM_RE = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_ID_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOTTED_ID_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_WS = " \t\r\n"
_DIGITS = "0123456789"


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    pos: int
    value: float = 0.0


def parse_number(text: str, pos: int, src: str, dialect: str | None) -> float:
    """A decimal literal as float64.  A literal that overflows float64 (1e999) is an error, never
    a silent inf; one that underflows rounds to zero or a subnormal as IEEE-754 prescribes."""
    try:
        v = float(text)
    except ValueError:
        raise ParseError(f"malformed number {text!r}", src, pos, dialect) from None
    if math.isinf(v):
        raise ParseError(f"number {text!r} overflows float64", src, pos, dialect)
    return v


def tokenize(src: str, dialect: str | None = None, dotted: bool = False) -> list[Token]:
    """Split `src` into tokens; unknown characters raise ParseError naming the position."""
    if not isinstance(src, str):
        raise ParseError(f"expected a string, got {type(src).__name__}", None, None, dialect)
    out: list[Token] = []
    i, n = 0, len(src)
    id_re = _DOTTED_ID_RE if dotted else _ID_RE
    while i < n:
        c = src[i]
        if c in _WS:
            i += 1
            continue
        if c in _DIGITS or (c == "." and i + 1 < n and src[i + 1] in _DIGITS):
            m = _NUM_RE.match(src, i)
            assert m is not None
            end = m.end()
            if end < n and (src[end].isalpha() or src[end] == "_"):
                raise ParseError("number runs into a name", src, i, dialect)
            out.append(Token(NUM, m.group(), i, parse_number(m.group(), i, src, dialect)))
            i = end
            continue
        if c.isascii() and (c.isalpha() or c == "_"):
            m = id_re.match(src, i)
            assert m is not None
            out.append(Token(ID, m.group(), i))
            i = m.end()
            continue
        for s in _SYMBOLS:
            if src.startswith(s, i):
                out.append(Token(SYM, s, i))
                i += len(s)
                break
        else:
            raise ParseError(f"unexpected character {c!r}", src, i, dialect)
    out.append(Token(END, "", n))
    return out
