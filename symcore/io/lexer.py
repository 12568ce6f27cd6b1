"""Tokenizer shared by the infix readers: numbers, identifiers and punctuation, with positions."""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import numpy as np

from symcore.errors import ParseError

NUM, ID, SYM, END = "num", "id", "sym", "end"

#: the operator symbols the tokenizer produces (a dialect may spell binary operators with these)
OPERATOR_SYMBOLS = ("**", "+", "-", "*", "/", "^")

_NUM = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_ID = r"[A-Za-z_][A-Za-z0-9_]*"


def _scanner(ident: str, julia: bool = False) -> re.Pattern[str]:
    # Julia's Float32 literals (SymbolicRegression.jl / PySR at precision 32): 1.5f0, 2.0f-5
    f32 = rf"(?P<f32>(?>{_NUM})f[+-]?[0-9]+)(?![A-Za-z0-9_])|" if julia else ""
    return re.compile(rf"""
        (?P<ws>[ \t\r\n]+)
      | {f32}(?P<badnum>(?>{_NUM})[A-Za-z_])
      | (?P<num>{_NUM})
      | (?P<id>{ident})
      | (?P<sym>\*\*|[-+*/^(),\[\]:])
      | (?P<bad>.)
    """, re.VERBOSE | re.DOTALL)


_SCAN = _scanner(_ID)
_SCAN_JULIA = _scanner(_ID, julia=True)
_SCAN_DOTTED = _scanner(rf"{_ID}(?:\.{_ID})*")


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


def tokenize(src: str, dialect: str | None = None, dotted: bool = False,
             julia: bool = False) -> list[Token]:
    """Split `src` into tokens; unknown characters raise ParseError naming the position."""
    if not isinstance(src, str):
        raise ParseError(f"expected a string, got {type(src).__name__}", None, None, dialect)
    out: list[Token] = []
    append = out.append
    for m in (_SCAN_DOTTED if dotted else _SCAN_JULIA if julia else _SCAN).finditer(src):
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
        elif kind == "f32":
            mant, _, expo = text.partition("f")
            v = parse_number(f"{mant}e{expo}", pos, src, dialect)
            with np.errstate(over="ignore"):
                v32 = float(np.float32(v))
            if math.isinf(v32):
                raise ParseError(f"number {text!r} overflows float32", src, pos, dialect)
            append(Token(NUM, text, pos, v32))
        elif kind == "badnum":
            raise ParseError("number runs into a name", src, pos, dialect)
        else:
            raise ParseError(f"unexpected character {text!r}", src, pos, dialect)
    append(Token(END, "", len(src)))
    return out
