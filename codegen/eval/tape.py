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
  identical candidates share one code segment.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from symcore.errors import CompileError, SymcoreError
from symcore.ir import Expr
from symcore.ops import OPS

from symcore.codegen import bytecode as _bytecode

#: opcode of every operator: its position in the ops table (the table drives the interpreter)
OPCODES: dict[str, int] = {name: i for i, name in enumerate(OPS)}

KIND_CONST = 0
KIND_PARAM = 1

#: |k| of powi's exponent the tape holds as an int32 immediate
POWI_IMMEDIATE_MAX = 2**24

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


def from_arrays(code: np.ndarray, fills: np.ndarray, pool: np.ndarray, cands: np.ndarray, *,
                n_vars: int, n_scratch: int, n_nodes: Sequence[int], n_params: int = 0) -> Tape:
    """A `Tape` from arrays a caller packed itself (e.g. straight from a frontend's token
    lists), converted to the layout's dtypes and checked: every slot, fill, pool index and
    code range must lie inside the tape, so a packing bug raises `CompileError` here instead
    of reaching the interpreter."""
    try:
        code_a = np.ascontiguousarray(code, dtype=np.int32).reshape(-1, 4)
        fills_a = np.ascontiguousarray(fills, dtype=np.int32).reshape(-1, 3)
        pool_a = np.ascontiguousarray(pool, dtype=np.float64).reshape(-1)
        cands_a = np.ascontiguousarray(cands, dtype=np.int32).reshape(-1, 5)
    except (TypeError, ValueError) as err:
        raise CompileError(f"tape arrays have the wrong shape or type: {err}") from None
    n_vars, n_scratch, n_params = int(n_vars), int(n_scratch), int(n_params)
    if n_vars < 0 or n_scratch < 0 or n_params < 0:
        raise CompileError("n_vars, n_scratch and n_params must be non-negative")
    nodes = tuple(int(k) for k in n_nodes)
    P = cands_a.shape[0]
    if len(nodes) != P:
        raise CompileError(f"n_nodes has {len(nodes)} entries for {P} candidate(s)")
    n_slots = n_vars + n_scratch
    opcodes = _bytecode.opcodes()
    opc = code_a[:, 0]
    powi = opc == opcodes["powi"]
    arity = np.array([OPS[name].arity for name in opcodes], dtype=np.int64)
    if code_a.size and (opc.min() < 0 or opc.max() >= len(opcodes)):
        raise CompileError("tape: an opcode outside the ops table")
    binary = (arity[np.clip(opc, 0, len(opcodes) - 1)] == 2) & ~powi

    def inside(a: np.ndarray, lo: int, hi: int) -> bool:
        return not a.size or bool(a.min() >= lo and a.max() < hi)
    kinds = fills_a[:, 1]
    ok = (inside(code_a[:, 1], n_vars, n_slots) and inside(code_a[:, 2], 0, n_slots)
          and inside(code_a[binary, 3], 0, n_slots)
          and inside(fills_a[:, 0], n_vars, n_slots)
          and bool(np.all((kinds == KIND_CONST) | (kinds == KIND_PARAM)))
          and inside(fills_a[kinds == KIND_CONST, 2], 0, pool_a.size)
          and inside(fills_a[kinds == KIND_PARAM, 2], 0, n_params)
          and inside(cands_a[:, 4], 0, n_slots))
    if ok and P:
        c_off, c_n, f_off, f_n = (cands_a[:, i].astype(np.int64) for i in range(4))
        ok = bool(np.all((c_off >= 0) & (c_n >= 0) & (c_off + c_n <= code_a.shape[0])
                         & (f_off >= 0) & (f_n >= 0) & (f_off + f_n <= fills_a.shape[0])))
    if not ok:
        raise CompileError("tape: a slot, fill, pool index or code range outside the tape")
    return Tape(code=code_a, fills=fills_a, pool=pool_a, cands=cands_a, n_vars=n_vars,
                n_scratch=n_scratch, n_params=n_params, n_nodes=nodes)


#: scratch slots are numbered from here while packing, then moved to start at n_vars
_SCRATCH = 1 << 30


class _Segment:
    """One candidate packed on its own (scratch slots relative to `_SCRATCH`, constants by
    value); cached per expression, so a population that repeats candidates packs them once."""

    __slots__ = ("code", "fills", "root", "n_scratch", "n_vars", "n_params", "__weakref__")

    def __init__(self, e: Expr) -> None:
        # Hot path of packing (pure Python per node): dicts are keyed by id() because Expr's
        # hash is a Python-level method (the nodes stay alive while `nodes` holds them).
        nodes: list[Expr] = []
        uses: dict[int, int] = {}
        expanded: set[int] = set()
        done: set[int] = set()
        stack = [e]
        while stack:  # post-order (children before parents) counting every use; iterative
            n = stack[-1]
            i = id(n)
            if i in done:
                stack.pop()
            elif i in expanded:
                stack.pop()
                done.add(i)
                nodes.append(n)
            else:
                expanded.add(i)
                for a in n.args:
                    ia = id(a)
                    uses[ia] = uses.get(ia, 0) + 1
                    if ia not in done:
                        stack.append(a)
        slot: dict[int, int] = {}
        fills: list[tuple[int, int, float]] = []
        code: list[tuple[int, int, int, int]] = []
        free: list[int] = []
        top = 0
        n_vars = n_params = 0
        opcodes = _bytecode.opcodes()  # live: user ops registered later included
        ok = _bytecode.runnable()

        def leaf_slot(a: Expr) -> int:
            # leaves get their slot when first used as a value (a powi exponent never is)
            nonlocal top, n_vars, n_params
            if a.op == "var":
                s = a.value
                if s >= _SCRATCH:
                    raise CompileError(f"variable index {s} is too large for tier 0")
                n_vars = max(n_vars, s + 1)
            else:
                s = _SCRATCH + top
                top += 1
                if a.op == "const":
                    fills.append((s, KIND_CONST, a.value))
                else:
                    fills.append((s, KIND_PARAM, a.value))
                    n_params = max(n_params, a.value + 1)
            slot[id(a)] = s
            return s

        for n in nodes:
            args = n.args
            if not args:
                continue
            name = n.op
            opc = opcodes.get(name)
            if opc is None:
                raise CompileError(f"operator {name!r} is not in the ops table")
            if name not in ok:
                raise CompileError(f"tier 0 cannot evaluate operator {name!r}: it has no LLVM "
                                   f"lowering (give its Op a `lower`, a plain-call `c` template "
                                   f"or an `expand`)")
            x = args[0]
            a = slot.get(id(x))
            if a is None:
                a = leaf_slot(x)
            if len(args) == 1:
                b = 0
            elif name == "powi" and abs(args[1].value) <= POWI_IMMEDIATE_MAX:
                b = int(args[1].value)
                args = (x,)
            else:
                if name == "powi":
                    # the reference computes powi as np.power(a, float k): beyond the immediate
                    # range that is exactly pow with the exponent in a constant slot
                    opc = opcodes["pow"]
                y = args[1]
                b = slot.get(id(y))
                if b is None:
                    b = leaf_slot(y)
            # an operand dead after this node frees its slot first, so dst may reuse it:
            # the interpreter reads both operands of a row chunk before writing that chunk
            for arg in args:
                ia = id(arg)
                left = uses[ia] - 1
                uses[ia] = left
                if not left and arg.args:
                    free.append(slot[ia])
            if free:
                d = free.pop()
            else:
                d = _SCRATCH + top
                top += 1
            slot[id(n)] = d
            code.append((opc, d, a, b))
        root = slot.get(id(e))
        self.root = leaf_slot(e) if root is None else root
        self.code, self.fills, self.n_scratch = code, fills, top
        self.n_vars, self.n_params = n_vars, n_params


# id(expr) -> (weak reference, segment); an entry leaves with its expression
_CACHE: dict[int, tuple[Any, _Segment]] = {}


def _segment(e: Expr) -> _Segment:
    k = id(e)
    entry = _CACHE.get(k)
    if entry is None or entry[0]() is not e:
        entry = (weakref.ref(e, lambda _r, k=k: _CACHE.pop(k, None)), _Segment(e))
        _CACHE[k] = entry
    return entry[1]


def _fix(a: np.ndarray, cols: tuple[int, ...], n_vars: int) -> None:
    # scratch slots: _SCRATCH + k -> n_vars + k (var slots and powi immediates stay)
    for c in cols:
        col = a[:, c]
        col[col >= _SCRATCH] += n_vars - _SCRATCH


def pack(exprs: Sequence[Expr], n_vars: int | None = None) -> Tape:
    """Pack a population into one tape (identical candidates share their code)."""
    exprs = list(exprs)
    for i, e in enumerate(exprs):
        if not isinstance(e, Expr):
            raise SymcoreError(f"candidate {i} is not an Expr (got {type(e).__name__})")
    code: list[tuple[int, int, int, int]] = []
    fills: list[tuple[int, int, int]] = []
    pool: dict[Any, int] = {}
    pool_vals: list[float] = []
    rows: list[tuple[int, int, int, int, int]] = []
    placed: dict[int, int] = {}
    used = n_params = n_scratch = 0
    for e in exprs:
        at = placed.get(id(e))
        if at is not None:
            rows.append(rows[at])
            continue
        seg = _segment(e)
        used = max(used, seg.n_vars)
        n_params = max(n_params, seg.n_params)
        n_scratch = max(n_scratch, seg.n_scratch)
        fill_off = len(fills)
        for s, kind, v in seg.fills:
            if kind == KIND_CONST:
                # keyed so that 0.0 and -0.0 stay apart
                key = v if v else (v, math.copysign(1.0, v))
                idx = pool.get(key)
                if idx is None:
                    idx = pool[key] = len(pool_vals)
                    pool_vals.append(v)
                fills.append((s, kind, idx))
            else:
                fills.append((s, kind, v))
        placed[id(e)] = len(rows)
        rows.append((len(code), len(seg.code), fill_off, len(seg.fills), seg.root))
        code.extend(seg.code)
    if n_vars is None:
        n_vars = used
    elif n_vars < used:
        raise CompileError(f"population reads {used} column(s), tape built for {n_vars}")
    code_a = np.array(code, dtype=np.int64).reshape(-1, 4)
    fills_a = np.array(fills, dtype=np.int64).reshape(-1, 3)
    cands_a = np.array(rows, dtype=np.int64).reshape(-1, 5)
    powi = code_a[:, 0] == OPCODES["powi"]
    imm = code_a[powi, 3].copy()
    _fix(code_a, (1, 2, 3), n_vars)
    code_a[powi, 3] = imm
    _fix(fills_a, (0,), n_vars)
    _fix(cands_a, (4,), n_vars)
    return Tape(
        code=code_a.astype(np.int32), fills=fills_a.astype(np.int32),
        pool=np.array(pool_vals, dtype=np.float64), cands=cands_a.astype(np.int32),
        n_vars=n_vars, n_scratch=n_scratch, n_params=n_params,
        n_nodes=tuple(e.size for e in exprs))
