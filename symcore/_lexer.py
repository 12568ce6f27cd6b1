"""Tokenizer shared by the infix readers: numbers, identifiers and punctuation, with positions."""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from .errors import ParseError

NUM, ID, SYM, END = "num", "id", "sym", "end"

_NUM = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_ID = r"[A-Za-z_][A-Za-z0-9_]*"
_SCAN = re.compile(rf"""
    (?P<ws>[ \t\r\n]+)
  | (?P<badnum>(?>{_NUM})[A-Za-z_])
  | (?P<num>{_NUM})
  | (?P<id>{_ID})
  | (?P<sym>\*\*|[-+*/^(),\[\]:])
  | (?P<bad>.)
""", re.VERBOSE | re.DOTALL)
_SCAN_DOTTED = re.compile(_SCAN.pattern.replace(
    f"(?P<id>{_ID})", f"(?P<id>{_ID}(?:\\.{_ID})*)"), re.VERBOSE | re.DOTALL)


class Token(NamedTuple):
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
    append = out.append
    for m in (_SCAN_DOTTED if dotted else _SCAN).finditer(src):
        kind = m.lastgroup
        if kind == "ws":
            continue
        text = m.group()
        pos = m.start()
        if kind == "num":
            append(Token(NUM, text, pos, parse_number(text, pos, src, dialect)))
        elif kind == "id":
            append(Token(ID, text, pos))
        elif kind == "sym":
            append(Token(SYM, text, pos))
        elif kind == "badnum":
            raise ParseError("number runs into a name", src, pos, dialect)
        else:
            raise ParseError(f"unexpected character {text!r}", src, pos, dialect)
    append(Token(END, "", len(src)))
    return out
