"""The e-graph term language, generated from symcore.ops.OPS, and IR -> egglog program text.

Constants stay float64 bit-exact: finite non-negative-zero values travel as `(Num f64)`, -0.0 as
`(o_neg (Num 0.0))` (egglog's f64 identifies -0.0 with 0.0), NaN/±inf as opaque `(Spec i64)`.
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Iterable, Sequence

import numpy as np

from symcore.errors import SymcoreError
from symcore.ir import Expr, call, const, topo
from symcore.ops import OPS, generation

SORT = "M"
#: ops-table name -> egglog constructor name (one constructor per op, generated; refreshed in
#: place by `sync` when ops are registered, so imported references stay valid)
CTOR: dict[str, str] = {}
OP_OF: dict[str, str] = {}
#: fact-table code of each op (its position in the table)
_OPCODE: dict[str, int] = {}
_SYNCED = [-1]


def sync() -> None:
    """Bring CTOR, OP_OF and the fact-table codes up to the ops table (cheap when unchanged)."""
    gen = generation()
    if _SYNCED[0] == gen:
        return
    names = list(OPS)
    CTOR.clear()
    CTOR.update({name: f"o_{name}" for name in names})
    OP_OF.clear()
    OP_OF.update({c: n for n, c in CTOR.items()})
    _OPCODE.clear()
    _OPCODE.update({name: i for i, name in enumerate(names)})
    _SYNCED[0] = gen


sync()
#: non-finite constants (codes of the Spec leaf)
SPECIAL: dict[int, float] = {0: math.nan, 1: math.inf, 2: -math.inf}
#: anonymous free parameter (params mode): every occurrence is its own fittable slot
FREE_PARAM = "PFree"
ROOT = "Node"  # unextractable table of every inserted node (the roots among them)
_MAXF = "1.7976931348623157e308"


def declarations() -> str:
    """The datatype: leaves, one constructor per op (an op no rule mentions is an
    uninterpreted function), and the unextractable root table."""
    sync()
    ctors = ["(Num f64)", "(Var i64)", "(Par i64)", "(Spec i64)", f"({FREE_PARAM})"]
    for name, op in OPS.items():
        ctors.append(f"({CTOR[name]} {' '.join([SORT] * op.arity)})")
    return (f"(datatype {SORT} {' '.join(ctors)})\n"
            f"(constructor {ROOT} (i64) {SORT} :unextractable)\n" + loader_declarations() + "\n")


def fnum(v: float) -> str:
    """egglog f64 literal that parses back to exactly `v` (finite)."""
    s = repr(float(v))
    if "e" in s or "E" in s:
        mant, ex = s.lower().split("e")
        if "." not in mant:
            mant += ".0"
        return f"{mant}e{ex}"
    return s


def const_text(v: float) -> str:
    v = float(v)
    if math.isnan(v):
        return "(Spec 0)"
    if math.isinf(v):
        return "(Spec 1)" if v > 0 else "(Spec 2)"
    if v == 0.0 and math.copysign(1.0, v) < 0:
        return f"({CTOR['neg']} (Num 0.0))"
    return f"(Num {fnum(v)})"


FREE = -1  # slot of an anonymous parameter marker (params mode; renumbered after extraction)


def prepare_all(exprs: Sequence[Expr], free: Sequence[frozenset[int]] | None = None
                ) -> tuple[list[Expr], dict[int, str | None]]:
    """The IR that goes into the e-graph, in one pass over the population's shared DAG:
    constants folded with the NumPy reference (bit-identical to the evaluator), -0.0 spelled
    neg(0.0) (egglog's f64 does not keep the sign of zero) and, per input, the parameters in
    `free[i]` replaced by the anonymous marker.  Also returns the variables' display names."""
    neg0 = call("neg", const(0.0))
    memo: dict[int, Expr] = {}   # keyed by id(): the inputs keep every node alive meanwhile
    names: dict[int, str | None] = {}
    with np.errstate(all="ignore"):
        for n in topo(exprs):
            if not n.args:
                if n.op == "const" and n.value == 0.0 and math.copysign(1.0, n.value) < 0:
                    memo[id(n)] = neg0
                else:
                    if n.name is not None:
                        names[n.value] = n.name
                    memo[id(n)] = n
                continue
            args = tuple([memo[id(a)] for a in n.args])
            a0 = args[0]
            # constant arguments (powi: a constant base) are folded; tested on the first
            # argument first because most nodes have a non-constant one
            if (a0.op == "const" or a0 is neg0) and (n.op == "powi" or all(
                    a.op == "const" or a is neg0 for a in args[1:])):
                vals = [np.float64(-0.0) if a is neg0 else np.float64(a.value) for a in args]
                v = float(np.asarray(OPS[n.op].np(*vals), dtype=np.float64))
                memo[id(n)] = neg0 if v == 0.0 and math.copysign(1.0, v) < 0 else const(v)
            elif args == n.args:   # Expr equality is identity (hash-consed)
                memo[id(n)] = n
            else:
                memo[id(n)] = Expr(n.op, args)
    out = [memo[id(e)] for e in exprs]
    if free is not None:
        out = [_mark_free(e, f) if f else e for e, f in zip(out, free)]
    return out, names


def _mark_free(expr: Expr, free: frozenset[int]) -> Expr:
    memo: dict[Expr, Expr] = {}
    for n in topo([expr]):
        if n.op == "param" and n.value in free:
            memo[n] = Expr("param", (), FREE)
        elif n.is_leaf:
            memo[n] = n
        else:
            args = tuple(memo[a] for a in n.args)
            memo[n] = n if args == n.args else Expr(n.op, args)
    return memo[expr]


_ARITY_REL = {1: "L1", 2: "L2"}


def loader_declarations() -> str:
    """Fact tables for bulk loading (read with egglog's `input`) and the rules that turn every
    row into `Node(n) = term`: one rule run builds the whole population."""
    sync()
    lines = ["(relation L_var (i64 i64))", "(relation L_par (i64 i64))",
             "(relation L_num (i64 f64))", "(relation L_spec (i64 i64))", "(relation L_free (i64))",
             "(relation L1 (i64 i64 i64))", "(relation L2 (i64 i64 i64 i64))", "(ruleset load)",
             f"(rule ((L_var n i)) ((union ({ROOT} n) (Var i))) :ruleset load)",
             f"(rule ((L_par n i)) ((union ({ROOT} n) (Par i))) :ruleset load)",
             f"(rule ((L_num n v)) ((union ({ROOT} n) (Num v))) :ruleset load)",
             f"(rule ((L_spec n i)) ((union ({ROOT} n) (Spec i))) :ruleset load)",
             f"(rule ((L_free n)) ((union ({ROOT} n) ({FREE_PARAM}))) :ruleset load)"]
    for name, op in OPS.items():
        kids = " ".join(f"k{j}" for j in range(op.arity))
        nodes = " ".join(f"({ROOT} k{j})" for j in range(op.arity))
        lines.append(f"(rule (({_ARITY_REL[op.arity]} n {_OPCODE[name]} {kids})) "
                     f"((union ({ROOT} n) ({CTOR[name]} {nodes}))) :ruleset load)")
    return "\n".join(lines)


#: tmpfs for the fact files when there is one: a directory and four files cost ~0.1 ms there,
#: 1-10 ms on a busy disk
SHM_DIR = "/dev/shm"
#: bytes of free tmpfs required per node written (a fact line is < 40 bytes)
SHM_BYTES_PER_NODE = 256


def _shm_usable() -> bool:
    return os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK | os.X_OK)


_SHM = _shm_usable()
#: below this many distinct nodes the facts go inline into the program text (no files: the
#: temporary directory cost more than egglog's whole load for one expression); each inline
#: fact costs ~15 us of egglog's parser (measured inline vs files on tmpfs: 13 nodes 0.5 vs
#: 1.1 ms, 106 nodes 1.8 vs 1.1 ms, 919 nodes 14 vs 3.4 ms; files on a busy disk 1-10 ms more)
INLINE_NODES = 64 if _SHM else 1_000


def fact_directory(n_nodes: int) -> tempfile.TemporaryDirectory:
    """A temporary directory for the fact files of `n_nodes` nodes: on tmpfs when it has
    room for them, else in the default temporary directory."""
    where = None
    if _SHM:
        try:
            st = os.statvfs(SHM_DIR)
            if st.f_bavail * st.f_frsize > SHM_BYTES_PER_NODE * n_nodes:
                where = SHM_DIR
        except OSError:   # pragma: no cover - vanished mount
            where = None
    return tempfile.TemporaryDirectory(prefix="symcore-egg-", dir=where)


def write_tables(exprs: Sequence[Expr], directory: str | None,
                 order: Sequence[Expr] | None = None) -> tuple[str, list[int]]:
    """Write the distinct nodes of the prepared `exprs` as fact files in `directory` (None:
    facts inline in the program); returns the egglog program that loads them and the node id
    of every input's root.  `order`: topo(exprs), when the caller has it already."""
    sync()
    if order is None:
        order = topo(exprs)
    ids = {id(n): i for i, n in enumerate(order)}
    rows: dict[str, list[str]] = {k: [] for k in ("L_var", "L_par", "L_num", "L_spec",
                                                    "L_free", "L1", "L2")}
    for i, n in enumerate(order):
        if n.op == "var":
            rows["L_var"].append(f"{i}\t{n.value}")
        elif n.op == "param":
            if n.value == FREE:
                rows["L_free"].append(f"{i}")
            else:
                rows["L_par"].append(f"{i}\t{n.value}")
        elif n.op == "const":
            v = float(n.value)
            if math.isfinite(v):
                rows["L_num"].append(f"{i}\t{fnum(v)}")
            else:
                code = 0 if math.isnan(v) else (1 if v > 0 else 2)
                rows["L_spec"].append(f"{i}\t{code}")
        else:
            rel = _ARITY_REL.get(len(n.args))
            if rel is None:  # pragma: no cover - every op of the table is unary or binary
                raise SymcoreError(f"no fact table for {len(n.args)}-ary operator {n.op!r}")
            kids = "\t".join([str(ids[id(a)]) for a in n.args])
            rows[rel].append(f"{i}\t{_OPCODE[n.op]}\t{kids}")
    cmds = []
    for rel, lines in rows.items():
        if not lines:
            continue
        if directory is None:
            cmds.extend([f"({rel} {ln.replace(chr(9), ' ')})" for ln in lines])
            continue
        path = os.path.join(directory, f"{rel}.facts")
        with open(path, "w") as fh:
            fh.write("\n".join(lines))
            fh.write("\n")
        cmds.append(f'(input {rel} "{path}")')
    cmds.append("(run-schedule (run load))")
    return "\n".join(cmds), [ids[id(e)] for e in exprs]


def single_use_params(expr: Expr) -> frozenset[int]:
    """Parameter slots that occur once in the tree (those can be fused; tied slots cannot).
    Occurrences are counted over the DAG (paths from the root), without expanding it."""
    order = topo([expr])
    paths: dict[int, int] = {id(expr): 1}
    counts: dict[int, int] = {}
    for n in reversed(order):          # parents before children
        k = paths.get(id(n), 0)
        if n.op == "param":
            counts[n.value] = counts.get(n.value, 0) + k
        for a in n.args:
            paths[id(a)] = paths.get(id(a), 0) + k
    return frozenset(slot for slot, c in counts.items() if c == 1)


def ops_without_constructor(names: Iterable[str]) -> set[str]:
    """Ops of the table that have no constructor among `names` (used by tests)."""
    sync()
    return set(OPS) - {OP_OF[n] for n in names if n in OP_OF}


ops_covered = ops_without_constructor  # old, misleading name (returns the ops NOT covered)
