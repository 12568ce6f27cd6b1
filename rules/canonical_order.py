"""The total order of canonical operands: a stable structural byte key per node (constants,
variables, parameters, then compound terms by digest), the same in every process; and the
builders that emit operands in that order (sorted, flattened associative chains)."""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Sequence

import numpy as np

from symcore.errors import SymcoreError
from symcore.ir import Expr, const
from symcore.ops import OPS

__all__ = ["sort_key"]


# Stable order: a byte key per node, computed once per node (cached weakly across calls).

# the key lives in the node's `_skey` slot (symcore.ir), dying with the node
_set_skey = Expr.__dict__["_skey"].__set__
_blake2b = hashlib.blake2b


def _leaf_key(n: Expr) -> bytes:
    if n.op == "const":
        v = n.value
        return b"\x00" + (b"\x7f\xf8" + bytes(6) if math.isnan(v) else struct.pack(">d", v))
    if n.op == "var":
        return b"\x01" + struct.pack(">I", n.value) + (n.name or "").encode()
    if n.op == "param":
        return b"\x02" + struct.pack(">q", n.value)
    raise SymcoreError(f"unknown leaf kind {n.op!r}")  # pragma: no cover


def sort_key(e: Expr) -> bytes:
    """Total order of canonical operands: constants, then variables by column, then parameters
    by slot, then compound terms by a structural digest (stable across processes)."""
    k = e._skey
    if k is not None:
        return k
    stack = [e]
    while stack:
        n = stack[-1]
        if n._skey is not None:
            stack.pop()
            continue
        if not n.args:
            _set_skey(n, _leaf_key(n))
            stack.pop()
            continue
        todo = [a for a in n.args if a._skey is None]
        if todo:
            stack.extend(todo)
            continue
        stack.pop()
        # one digest of op, then each operand key with its length (2 bytes, little endian)
        parts = [n.op.encode()]
        for a in n.args:
            ka = a._skey
            parts.append(len(ka).to_bytes(2, "little"))
            parts.append(ka)
        _set_skey(n, b"\x03" + _blake2b(b"".join(parts), digest_size=15).digest())
    return e._skey


# -- building nodes in canonical order ---------------------------------------------------------

#: ops whose repeated operands are one (max(x, x) = x)
IDEMPOTENT = frozenset({"max", "min", "fmax", "fmin"})


def _power(b: Expr, k: int) -> Expr:
    if k == 1:
        return b
    if k == 2:
        return Expr("square", (b,))
    if k == 3:
        return Expr("cube", (b,))
    return Expr("powi", (b, const(float(k))))


def _chain(op: str, xs: Sequence[Expr]) -> Expr:
    acc = xs[0]
    for x in xs[1:]:
        acc = Expr(op, (acc, x))
    return acc


def _ac_chain(op: str, args: tuple[Expr, ...]) -> Expr:
    """An associative-commutative op: operands of nested same-op nodes flattened, constants
    folded into one (last), the rest sorted; a left-leaning chain."""
    flat: list[Expr] = []
    stack = list(reversed(args))
    while stack:
        n = stack.pop()
        if n.op == op:
            stack.extend(reversed(n.args))
        else:
            flat.append(n)
    consts = [a for a in flat if a.op == "const"]
    rest = sorted((a for a in flat if a.op != "const"), key=sort_key)
    if op in IDEMPOTENT:
        rest = list(dict.fromkeys(rest))
    if len(consts) > 1:
        with np.errstate(all="ignore"):
            v = consts[0].value
            for c in consts[1:]:
                v = float(OPS[op].np(np.float64(v), np.float64(c.value)))
        consts = [const(v)]
    return _chain(op, rest + consts)
