"""Tier-0 tape: a whole population of IR expressions packed into flat integer/float arrays that the
compiled-once batch interpreter (`tier0`) walks; slots are allocated so each candidate's scratch is small.

Layout (all arrays C-contiguous, little-endian):

* slots ``0 .. n_vars-1`` are the data columns (the interpreter points them into X), slots
  ``n_vars .. n_vars+n_scratch-1`` are scratch rows of one row block each;
* ``code`` (n_instr, 4) int32 rows ``(opcode, dst, a, b)``: ``dst[r] = op(a[r], b[r])`` for every
  row r of the block (``b`` is 0 and unused for unary ops; for ``powi`` it is the integer exponent itself,
  an immediate (a larger exponent is packed as ``pow`` with a constant slot, the same function);
* ``fills`` (n_fill, 3) int32 rows ``(slot, kind, index)``: before its row blocks a candidate sets
  scratch ``slot`` to ``pool[index]`` (kind 0, a constant) or to its parameter ``params[c, index]``
  (kind 1); these slots are never overwritten, so constants cost nothing per block;
* ``cands`` (P, 5) int32 rows ``(code_offset, n_instr, fill_offset, n_fill, root_slot)``;
  identical candidates share one code segment.
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
              pool_vals: list[float]) -> tuple[int, int, int, int, int, int]:
    """Append one candidate; returns its cands row plus the scratch slots it needs."""
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
            if not arg.is_leaf and last_use[arg] == i:
                heapq.heappush(free, slot[arg])
        if free:
            d = heapq.heappop(free)
        else:
            d = n_vars + top
            top += 1
        slot[n] = d
        code.append((OPCODES[opname], d, a, b))
    return (code_off, len(code) - code_off, fill_off, len(fills) - fill_off, slot[e], top)


def pack(exprs: Sequence[Expr], n_vars: int | None = None) -> Tape:
    """Pack a population into one tape (identical candidates share their code)."""
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
    seen: dict[Expr, tuple[int, int, int, int, int]] = {}
    n_scratch = 0
    for e in exprs:
        if e in seen:
            rows.append(seen[e])
            continue
        *row, need = _pack_one(e, n_vars, code, fills, pool, pool_vals)
        n_scratch = max(n_scratch, need)
        seen[e] = tuple(row)  # type: ignore[assignment]
        rows.append(seen[e])
    return Tape(
        code=np.array(code, dtype=np.int32).reshape(-1, 4),
        fills=np.array(fills, dtype=np.int32).reshape(-1, 3),
        pool=np.array(pool_vals, dtype=np.float64),
        cands=np.array(rows, dtype=np.int32).reshape(-1, 5),
        n_vars=n_vars, n_scratch=n_scratch, n_params=n_params,
        n_nodes=tuple(e.size for e in exprs))
