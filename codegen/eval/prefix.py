"""Prefix token programs (a search's own trees, e.g. gplearn's `program` lists) packed straight
into a tier-0 `Tape`, without IR: one Python pass over the tokens, the rest vectorised.

A token is an `int` (a data column), a `float` (a constant) or a symbol of the caller's table
(symbol -> ops-table name).  `symbol_table` numbers the symbols once; `pack_prefix` packs a
population against it into a tier-0 `Tape` (one code segment per program), `pack_shared`
into a shared `dag.DagTape` (every distinct subtree of the population once).
"""

from __future__ import annotations

import ctypes
import itertools
import sys
import threading
from typing import Any, Mapping, Sequence

import numpy as np

from symcore.errors import DataError, SymcoreError
from symcore.ops import OPS, generation

from symcore.codegen import bytecode as _bytecode
from symcore.codegen.eval import dag as _dag
from symcore.codegen.eval import tape as _tape

__all__ = ["symbol_table", "pack_prefix", "pack_shared", "LEAF_KIND"]

#: leaf token types: 0 a column index, 1 a constant (bool is neither)
LEAF_KIND: dict[type, int] = {int: 0, np.int64: 0, np.int32: 0, float: 1, np.float64: 1,
                              np.float32: 1}

_TABLES: dict[Any, dict[Any, tuple[int, int]]] = {}


def symbol_table(symbols: Mapping[Any, str]) -> dict[Any, tuple[int, int]]:
    """symbol -> (opcode, arity) as the tape numbers the ops now (memoised per mapping
    contents and ops-table generation)."""
    items = tuple(symbols.items())
    try:
        key = (items, generation())
        hit = _TABLES.get(key)
    except TypeError:          # unhashable op names: checked below
        key, hit = None, None
    if hit is not None:
        return hit
    opcodes = _bytecode.opcodes()
    runnable = _bytecode.runnable()
    table: dict[Any, tuple[int, int]] = {}
    for tok, name in items:
        if type(tok) in LEAF_KIND or type(tok) is bool:
            raise SymcoreError(f"symbol {tok!r}: ints and floats are variables and constants")
        op = OPS.get(name) if isinstance(name, str) else None
        if op is None:
            raise SymcoreError(f"symbol {tok!r}: {name!r} is not an operator of the ops table")
        if op.arity not in (1, 2) or name == "powi":
            raise SymcoreError(f"operator {name!r} cannot be a prefix token (arity "
                               f"{op.arity}{', immediate exponent' if name == 'powi' else ''})")
        if name not in runnable:
            raise SymcoreError(f"operator {name!r} has no lowering: tier 0 cannot run it")
        table[tok] = (opcodes[name], op.arity)
    if key is not None:
        if len(_TABLES) > 64:
            _TABLES.clear()
        _TABLES[key] = table
    return table


def _classify(programs: Sequence[Sequence[Any]], table: Mapping[Any, tuple[int, int]],
              n_features: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(program lengths, code per token, leaf values in token order): code = opcode + 2 for a
    symbol, else the leaf kind of its type (0 column, 1 constant).  The one Python pass over
    the tokens; raises for an empty program, a token that is none of these, a column
    outside 0..n_features-1."""
    P = len(programs)
    lens = np.fromiter(map(len, programs), dtype=np.int64, count=P)
    if P and lens.min() == 0:
        raise SymcoreError(f"program {int(np.argmin(lens))} is empty")
    fast = _by_identity(programs, int(lens.sum()), table, n_features)
    if fast is not None:
        return lens, fast[0], fast[1]
    flat = list(itertools.chain.from_iterable(programs))
    n = len(flat)
    # symbols hash by identity; a float never equals one, so its lookup falls to its type
    # (-1: neither a leaf type nor in the table)
    code_of = {tok: oa[0] + 2 for tok, oa in table.items()}
    type_kind = dict(LEAF_KIND)
    for tok in code_of:
        type_kind.setdefault(type(tok), -1)
    tcode = np.fromiter(map(code_of.get, flat, map(type_kind.get, map(type, flat),
                                                   itertools.repeat(-1))),
                        dtype=np.int64, count=n)
    if n and tcode.min() < 0:
        bad = flat[int(np.argmin(tcode))]
        raise SymcoreError(f"token {bad!r} is neither a column (int), a constant (float) "
                           f"nor a symbol")
    leaf = tcode < 2
    kind = tcode[leaf]
    # only ints and floats are left: ints convert exactly (columns are far below 2**53)
    vals = np.fromiter(itertools.compress(flat, leaf.tolist()), dtype=np.float64,
                       count=kind.size)
    var_ix = vals[kind == 0]
    if var_ix.size and (var_ix.min() < 0 or var_ix.max() >= n_features):
        bad = var_ix.max() if var_ix.max() >= n_features else var_ix.min()
        raise DataError(f"a program reads column {int(bad)}, X has {n_features}")
    return lens, tcode, vals


def _by_identity(programs: Sequence[Sequence[Any]], n: int,
                 table: Mapping[Any, tuple[int, int]], n_features: int
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """`_classify`'s (codes, leaf values) found by object identity, or None when it cannot
    be: symbols are the table's own objects and small-int columns are CPython's cached int
    objects, so a token's address names both.  The addresses come from an object array of
    the tokens (its buffer holds the PyObject pointers: no Python int per token, unlike
    `id`), then one vectorised search; the tokens left must all be plain floats (constants).
    A quarter of the cost of looking every token up by value; anything else (numpy scalars,
    a bool, a column above 256, a bad token) returns None for the general pass."""
    if sys.implementation.name != "cpython" or not n:
        return None
    known: dict[int, tuple[int, int]] = {}      # address -> (code, column)
    for tok, (o, _a) in table.items():
        known[id(tok)] = (o + 2, 0)
    for c in range(min(n_features, 257)):
        known[id(c)] = (0, c)                   # the interpreter's cached small ints
    if len(known) != len(table) + min(n_features, 257):
        return None
    objs = np.fromiter(itertools.chain.from_iterable(programs), dtype=object, count=n)
    # the object array's buffer: n PyObject pointers (read while `objs` holds the tokens)
    ids = np.ctypeslib.as_array((ctypes.c_int64 * n).from_address(objs.ctypes.data))
    kid = np.fromiter(known, dtype=np.int64, count=len(known))
    order = np.argsort(kid)
    kid = kid[order]
    kcode = np.array([v[0] for v in known.values()], dtype=np.int64)[order]
    kcol = np.array([v[1] for v in known.values()], dtype=np.float64)[order]
    at = np.minimum(np.searchsorted(kid, ids), kid.size - 1)
    hit = kid[at] == ids
    rest = objs[~hit]
    if not set(map(type, rest)) <= {float}:
        return None
    tcode = np.where(hit, kcode[at], 1)
    vals = np.empty(n, dtype=np.float64)
    vals[hit] = kcol[at[hit]]
    vals[~hit] = rest.astype(np.float64)
    del ids
    return tcode, vals[tcode < 2]


def pack_prefix(programs: Sequence[Sequence[Any]], table: Mapping[Any, tuple[int, int]],
                n_features: int) -> _tape.Tape:
    """One tape for `programs` (prefix token sequences) over data of `n_features` columns.

    Evaluation runs a prefix list backwards with a value stack: a token's value sits at stack
    position depth - 1, where depth(j) is the suffix sum of (1 - arity) over its program from j
    on.  An operator's result goes to the scratch slot of its stack position (the slot of its
    second operand; the interpreter reads both operands of a row block before writing it); its
    first operand is the next token, its second the next token of its program at the same
    depth (where the first operand's subtree ends).  Constants get slots of their own after
    the program's deepest stack slot.  Raises SymcoreError for an empty or incomplete program
    or an unknown token, DataError for a column outside 0..n_features-1."""
    nv = max(int(n_features), 1)
    P = len(programs)
    lens, tcode, vals = _classify(programs, table, n_features)
    n = tcode.size
    top = max((o for o, _ in table.values()), default=0)
    arity_of = np.zeros(top + 2, dtype=np.int64)      # arity_of[-1] = 0: a leaf (opcode -1)
    for o, ar_ in table.values():
        arity_of[o] = ar_
    leaf = tcode < 2
    opc = tcode - 2                                   # -1 or -2 on leaves
    opc[leaf] = -1
    kind = tcode[leaf]
    start = np.zeros(P + 1, dtype=np.int64)
    np.cumsum(lens, out=start[1:])
    ar = arity_of[opc]
    # depth: suffix sums of (1 - arity), restarted at each program's end
    suffix = np.zeros(n + 1, dtype=np.int64)
    suffix[:n] = np.cumsum((1 - ar)[::-1])[::-1]
    depth = suffix[:n] - np.repeat(suffix[start[1:]], lens)
    if n and (depth.min() < 1 or np.any(depth[start[:-1]] != 1)):
        prog_of = np.repeat(np.arange(P), lens)
        c = int(prog_of[np.argmin(depth)]) if depth.min() < 1 else int(
            np.flatnonzero(depth[start[:-1]] != 1)[0])
        raise SymcoreError(f"program {c} is not one complete prefix expression")
    is_const = np.zeros(n, dtype=bool)
    is_const[leaf] = kind == 1
    var_ix = vals[kind == 0]
    slot = np.empty(n, dtype=np.int64)
    slot[leaf] = 0
    is_var = np.zeros(n, dtype=bool)
    is_var[leaf] = kind == 0
    slot[is_var] = var_ix.astype(np.int64)
    op_depth = np.where(leaf, 0, depth)
    deepest = np.maximum.reduceat(op_depth, start[:-1]) if P else np.zeros(0, np.int64)
    slot[~leaf] = nv - 1 + depth[~leaf]
    cnum = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(is_const, out=cnum[1:])
    first_const = cnum[start[:-1]]
    n_const = cnum[start[1:]] - first_const
    # a program's k-th constant: slot nv + deepest + k
    const_slot = nv - 1 + np.repeat(deepest - first_const, lens) + cnum[1:]
    slot[is_const] = const_slot[is_const]
    pool = vals[kind == 1]
    # the second operand: the next token of the same program at the same depth.  A stable
    # sort by depth alone (radix for small ints) keeps positions ascending within a depth;
    # a successor in another program is rejected below
    dkey = depth.astype(np.int16) if n and depth.max() < (1 << 15) else depth
    order = np.argsort(dkey, kind="stable")
    o0, o1 = order[:-1], order[1:]
    same = (depth[o1] == depth[o0]) & (o1 < np.repeat(start[1:], lens)[o0])
    nxt = np.full(n, -1, dtype=np.int64)
    nxt[o0[same]] = o1[same]
    # instructions children first: program by program, operators in reverse prefix order
    pos = np.arange(n, dtype=np.int64)
    mirror = np.repeat(start[:-1] + start[1:] - 1, lens) - pos
    rev = np.empty(n, dtype=np.int64)
    rev[mirror] = pos
    ops = rev[~leaf[rev]]
    binary = ar[ops] == 2
    second = nxt[ops]
    if np.any(second[binary] < 0):   # pragma: no cover - excluded by the depth check
        raise SymcoreError("internal error: a binary operator without a second operand")
    code = np.empty((ops.size, 4), dtype=np.int32)
    code[:, 0] = opc[ops]
    code[:, 1] = slot[ops]
    code[:, 2] = slot[ops + 1]
    code[:, 3] = np.where(binary, slot[np.maximum(second, 0)], 0)
    n_instr = np.add.reduceat(~leaf, start[:-1]) if P else np.zeros(0, np.int64)
    cands = np.empty((P, 5), dtype=np.int32)
    cands[:, 0] = np.cumsum(n_instr) - n_instr
    cands[:, 1] = n_instr
    cands[:, 2] = first_const
    cands[:, 3] = n_const
    cands[:, 4] = slot[start[:-1]]
    fills = np.zeros((pool.size, 3), dtype=np.int32)
    fills[:, 0] = slot[is_const]
    fills[:, 2] = np.arange(pool.size)
    n_scratch = int((deepest + n_const).max()) if P else 0
    # from_arrays checks every slot, fill and range before native code can see them
    return _tape.from_arrays(code, fills, pool, cands, n_vars=nv, n_scratch=n_scratch,
                             n_nodes=lens.tolist())


def pack_shared(programs: Sequence[Sequence[Any]], table: Mapping[Any, tuple[int, int]],
                n_features: int) -> _dag.DagTape:
    """One shared tape (`dag.DagTape`) for `programs`: subtrees equal in structure (the same
    symbols' operators, columns, constants of the same bits) anywhere in the population are
    one instruction.  Same tokens and errors as `pack_prefix`."""
    from symcore.codegen.eval.prefix_native import packer
    nv = max(int(n_features), 1)
    P = len(programs)
    lens, tcode, vals = _classify(programs, table, n_features)
    n = tcode.size
    top = max((o for o, _ in table.values()), default=0)
    arity = np.zeros(top + 3, dtype=np.int32)       # by token code: opcode + 2
    for o, a in table.values():
        arity[o + 2] = a
    tok = tcode.astype(np.int32)
    val = np.zeros(n, dtype=np.float64)
    val[tcode < 2] = vals
    starts = np.zeros(P + 1, dtype=np.int64)
    np.cumsum(lens, out=starts[1:])
    H = 16
    while H < 2 * n:
        H *= 2
    m = max(n, 1)
    buf = _work_buffers(H, m, P)
    hk, hv, work, stream, roots, code, pool = buf
    hv[:H].fill(-1)
    res = np.zeros(4, dtype=np.int64)
    stack, nop, na, nb, uses, slot_of, freel = (work[i].ctypes.data for i in range(7))
    packer()(tok.ctypes.data, val.ctypes.data, starts.ctypes.data, P, arity.ctypes.data, nv,
             hk.ctypes.data, hv.ctypes.data, H - 1, stack, nop, na, nb, uses, slot_of,
             stream.ctypes.data, roots.ctypes.data, freel, code.ctypes.data, pool.ctypes.data,
             res.ctypes.data)
    n_instr, n_pool, n_slots, bad = (int(v) for v in res)
    if bad >= 0:
        raise SymcoreError(f"program {bad} is not one complete prefix expression")
    # copies: the buffers are the thread's, reused by its next call
    return _dag.from_arrays(code[:n_instr].copy(), pool[:n_pool].copy(), n_vars=nv,
                            n_slots=n_slots, n_candidates=P, n_nodes=lens.tolist())


_TLS = threading.local()
#: populations up to this many tokens keep their packing buffers per thread (~100 bytes a
#: token); larger ones allocate their own
_KEEP_TOKENS = 1 << 20


def _work_buffers(H: int, m: int, P: int) -> list[np.ndarray]:
    """The calling thread's packer buffers, grown as needed (fresh arrays of this size would
    cost page faults on every generation): hash keys (2H) and ids (H), 7 int32 work rows
    (stack nop na nb uses slot_of freel) of m, the stream (m + P), roots (P), code rows
    (m + P) and the pool (m)."""
    have = getattr(_TLS, "bufs", None)
    dims = getattr(_TLS, "dims", (0, 0, 0))
    if m > _KEEP_TOKENS:             # a rare huge population: its buffers are not kept
        return [np.empty(2 * H, np.int64), np.empty(H, np.int32), np.empty((7, m), np.int32),
                np.empty(m + P, np.int32), np.empty(max(P, 1), np.int32),
                np.empty((m + P, 4), np.int32), np.empty(m, np.float64)]
    if have is None or H > dims[0] or m > dims[1] or P > dims[2]:
        # a quarter of headroom: generations grow
        H2, m2, P2 = max(H, dims[0]), max(m + m // 4, dims[1]), max(P + P // 4 + 1, dims[2])
        have = _TLS.bufs = [np.empty(2 * H2, np.int64), np.empty(H2, np.int32),
                            np.empty((7, m2), np.int32), np.empty(m2 + P2, np.int32),
                            np.empty(P2, np.int32), np.empty((m2 + P2, 4), np.int32),
                            np.empty(m2, np.float64)]
        _TLS.dims = (H2, m2, P2)
    return have
