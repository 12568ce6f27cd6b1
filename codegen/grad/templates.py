"""Local-derivative templates taken from the ops table (the IR of d out / d arg_i over
placeholders), shared by the NumPy reference and both compiled Jacobians."""

from __future__ import annotations

import functools
import struct

from symcore.ir import Expr, const, var
from symcore.deriv import derivatives
from symcore.ops import OPS, generation

__all__ = ["deriv_template", "node_consts", "active_nodes"]


def deriv_template(op: str, consts: tuple[float | None, ...], i: int) -> Expr:
    """d out / d arg_i of `op` as IR over placeholders: `var(j)` stands for argument j (arguments
    that are literals, given in `consts`, stay literals: powi's derivative needs its exponent),
    `var(arity)` for the node's own value `out`."""
    # memoised on the literals' bit patterns: -0.0 == 0.0 as floats, yet 1/-0.0 is -inf
    bits = tuple(None if c is None else struct.pack("<d", float(c)) for c in consts)
    return _deriv_template(op, bits, i, generation())


@functools.lru_cache(maxsize=4096)
def _deriv_template(op: str, bits: tuple[bytes | None, ...], i: int, gen: int) -> Expr:
    # `gen`: the ops registry's generation (a re-registered user op has new derivatives)
    o = OPS[op]
    args = [var(j) if c is None else const(struct.unpack("<d", c)[0])
            for j, c in enumerate(bits)]
    return derivatives(op, args, var(o.arity))[i]


def node_consts(node: Expr) -> tuple[float | None, ...]:
    """The literal operands of `node` (None where an operand is not a literal)."""
    return tuple(float(a.value) if a.op == "const" else None for a in node.args)


def active_nodes(order: list[Expr]) -> set[Expr]:
    """Nodes whose value depends on a parameter (only these carry adjoints)."""
    act: set[Expr] = set()
    for n in order:
        if n.op == "param" or any(a in act for a in n.args):
            act.add(n)
    return act
