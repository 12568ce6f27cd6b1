"""Tier-0 tape: a whole population of IR expressions packed into flat integer/float arrays that
the compiled-once batch interpreter (`tier0`) walks; slot allocation keeps scratch small.

Layout (all arrays C-contiguous, little-endian):

* slots ``0 .. n_vars-1`` are the data columns (the interpreter points them into X), slots
  ``n_vars .. n_vars+n_scratch-1`` are scratch rows of one row block each;
* ``code`` (n_instr, 4) int32 rows ``(opcode, dst, a, b)``: ``dst[r] = op(a[r], b[r])`` for
  every row r of the block (``b`` is unused for unary ops; for ``powi`` it is the integer
  exponent itself, an immediate; a larger exponent is packed as ``pow`` with a constant slot);
* ``fills`` (n_fill, 3) int32 rows ``(slot, kind, index)``: before its row blocks a candidate sets
  scratch ``slot`` to ``pool[index]`` (kind 0, a constant) or to its parameter ``params[c, index]``
  (kind 1); these slots are never overwritten, so constants cost nothing per block;
* ``cands`` (P, 5) int32 rows ``(code_offset, n_instr, fill_offset, n_fill, root_slot)``;
  identical candidates share one code segment;
* Jacobian tapes (``pack(..., jacobian=True)``) give every node its own slot (values survive
  the forward sweep) and add ``rcode`` (n_rev, 5) rows ``(opcode, dst, a, b, flags)``, the reverse
  sweep over the nodes that depend on a parameter, and ``rcands`` (P, 3) rows
  ``(rcode_offset, n_rev, root_active)``.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from symcore.errors import CompileError, SymcoreError
from symcore.ir import Expr, topo
from symcore.ops import OPS

#: opcode of every operator: its position in the ops table (the table drives the interpreter)
OPCODES: dict[str, int] = {name: i for i, name in enumerate(OPS)}

KIND_CONST = 0
KIND_PARAM = 1

#: |k| of powi's exponent the tape holds as an int32 immediate
POWI_IMMEDIATE_MAX = 2**31 - 1

CAND_FIELDS = ("code_offset", "n_instr", "fill_offset", "n_fill", "root_slot")


@dataclass(frozen=True)
class Tape:
    """A packed population (see the module docstring for the layout)."""

    code: np.ndarray      # (n_instr, 4) int32
    fills: np.ndarray     # (n_fill, 3) int32
    pool: np.ndarray      # (n_const,) float64
    cands: np.ndarray     # (P, 5) int32
    n_vars: int           # data columns the population reads (1 + highest variable index)
    n_scratch: int        # scratch slots one candidate needs at most
    n_params: int         # parameter vector length needed (1 + highest parameter slot)
    n_nodes: tuple[int, ...]  # tree size of every candidate (for GPops accounting)
    rcode: np.ndarray     # (n_rev, 5) int32 reverse sweep (Jacobian tapes only, else empty)
    rcands: np.ndarray    # (P, 3) int32 (rcode_offset, n_rev, root_active) (Jacobian tapes)

    @property
    def n_slots(self) -> int:
        return self.n_vars + self.n_scratch

    @property
    def n_candidates(self) -> int:
        return int(self.cands.shape[0])


def _immediate_powi(n: Expr) -> bool:
    return n.op == "powi" and abs(n.args[1].value) <= POWI_IMMEDIATE_MAX


def _pack_one(e: Expr, n_vars: int, code: list[tuple[int, int, int, int]],
              fills: list[tuple[int, int, int]], pool: dict[bytes, int],
              pool_vals: list[float], rcode: list[tuple[int, int, int, int, int]] | None
              ) -> tuple[int, int, int, int, int, int]:
    """Append one candidate; returns its cands row plus the scratch slots it needs.  With
    `rcode` (the Jacobian tape) every node keeps its own slot and the reverse sweep is appended."""
    nodes = topo([e])
    last_use: dict[Expr, int] = {}
    for i, n in enumerate(nodes):
        for a in n.args:
            last_use[a] = i
    slot: dict[Expr, int] = {}
    fill_off, code_off = len(fills), len(code)
    n_reserved = 0
    # a constant used only as powi's exponent needs no slot: the exponent is an immediate
    exponent_only = {n.args[1] for n in nodes if _immediate_powi(n)}
    for n in nodes:
        if _immediate_powi(n):
            exponent_only.discard(n.args[0])
        elif not n.is_leaf:
            exponent_only.difference_update(n.args)
    if e in exponent_only:
        exponent_only.discard(e)
    for n in nodes:
        if n in exponent_only:
            continue
        if n.op == "var":
            if n.value >= n_vars:
                raise CompileError(f"variable x{n.value} outside the tape's {n_vars} columns")
            slot[n] = n.value
        elif n.op in ("const", "param"):
            s = n_vars + n_reserved
            n_reserved += 1
            slot[n] = s
            if n.op == "const":
                key = np.float64(n.value).tobytes()
                if key not in pool:
                    pool[key] = len(pool_vals)
                    pool_vals.append(float(n.value))
                fills.append((s, KIND_CONST, pool[key]))
            else:
                fills.append((s, KIND_PARAM, int(n.value)))
    free: list[int] = []
    ops_of: dict[Expr, tuple[int, int, int, int]] = {}
    top = n_reserved
    for i, n in enumerate(nodes):
        if n.is_leaf:
            continue
        op = OPS.get(n.op)
        if op is None:
            raise CompileError(f"operator {n.op!r} is not in the ops table")
        a = slot[n.args[0]]
        opname = n.op
        if _immediate_powi(n):
            b = int(n.args[1].value)
        elif opname == "powi":
            # the reference computes powi as np.power(a, float k): for an exponent beyond the
            # immediate range that is exactly pow with the exponent in a constant slot
            opname, b = "pow", slot[n.args[1]]
        else:
            b = slot[n.args[1]] if len(n.args) > 1 else 0
        # an operand dead after this node frees its slot first, so dst may reuse it: the
        # interpreter reads both operands of a row chunk before it writes that chunk
        for arg in dict.fromkeys(n.args):
            if rcode is None and not arg.is_leaf and last_use[arg] == i:
                heapq.heappush(free, slot[arg])
        if free:
            d = heapq.heappop(free)
        else:
            d = n_vars + top
            top += 1
        slot[n] = d
        code.append((OPCODES[opname], d, a, b))
        ops_of[n] = (OPCODES[opname], d, a, b)
    if rcode is not None:
        _reverse(nodes, ops_of, slot, rcode)
    return (code_off, len(code) - code_off, fill_off, len(fills) - fill_off, slot[e], top)


def _reverse(nodes: list[Expr], ops_of: dict[Expr, tuple[int, int, int, int]],
             slot: dict[Expr, int], rcode: list[tuple[int, int, int, int, int]]) -> None:
    """Reverse sweep rows ``(opcode, dst, a, b, flags)`` for the nodes that depend on a
    parameter, root first: flags bit 0/1 = propagate the adjoint to a/b, bit 2/3 = that is the
    operand's first contribution (store instead of add, so adjoints need no zeroing)."""
    active: set[Expr] = set()
    for n in nodes:
        if n.op == "param" or any(a in active for a in n.args):
            active.add(n)
    touched: set[Expr] = set()
    for n in reversed(nodes):
        if n.is_leaf or n not in active:
            continue
        opc, d, a, b = ops_of[n]
        flags = 0
        args = n.args[:1] if _immediate_powi(n) else n.args
        for i, arg in enumerate(args):
            if arg in active:
                flags |= 1 << i
                if arg not in touched:
                    flags |= 4 << i
                    touched.add(arg)
        rcode.append((opc, d, a, b, flags))


def pack(exprs: Sequence[Expr], n_vars: int | None = None, jacobian: bool = False) -> Tape:
    """Pack a population into one tape (identical candidates share their code).  With
    `jacobian`, every node keeps its value in its own slot and the reverse sweep is packed too."""
    exprs = list(exprs)
    for i, e in enumerate(exprs):
        if not isinstance(e, Expr):
            raise SymcoreError(f"candidate {i} is not an Expr (got {type(e).__name__})")
    used = 0
    n_params = 0
    for e in exprs:
        for n in topo([e]):
            if n.op == "var":
                used = max(used, n.value + 1)
            elif n.op == "param":
                n_params = max(n_params, n.value + 1)
    if n_vars is None:
        n_vars = used
    elif n_vars < used:
        raise CompileError(f"population reads {used} column(s), tape built for {n_vars}")
    code: list[tuple[int, int, int, int]] = []
    fills: list[tuple[int, int, int]] = []
    pool: dict[bytes, int] = {}
    pool_vals: list[float] = []
    rows: list[tuple[int, int, int, int, int]] = []
    rrows: list[tuple[int, int, int]] = []
    rcode: list[tuple[int, int, int, int, int]] | None = [] if jacobian else None
    seen: dict[Expr, tuple[tuple[int, int, int, int, int], tuple[int, int, int]]] = {}
    n_scratch = 0
    for e in exprs:
        if e not in seen:
            r_off = len(rcode) if rcode is not None else 0
            *row, need = _pack_one(e, n_vars, code, fills, pool, pool_vals, rcode)
            n_scratch = max(n_scratch, need)
            r_len = len(rcode) - r_off if rcode is not None else 0
            root_active = int(any(n.op == "param" for n in topo([e])))
            seen[e] = (tuple(row), (r_off, r_len, root_active))  # type: ignore[assignment]
        rows.append(seen[e][0])
        rrows.append(seen[e][1])
    return Tape(
        code=np.array(code, dtype=np.int32).reshape(-1, 4),
        fills=np.array(fills, dtype=np.int32).reshape(-1, 3),
        pool=np.array(pool_vals, dtype=np.float64),
        cands=np.array(rows, dtype=np.int32).reshape(-1, 5),
        rcode=np.array(rcode or [], dtype=np.int32).reshape(-1, 5),
        rcands=np.array(rrows if jacobian else [], dtype=np.int32).reshape(-1, 3),
        n_vars=n_vars, n_scratch=n_scratch, n_params=n_params,
        n_nodes=tuple(e.size for e in exprs))
