"""The IR: immutable, hash-consed expression nodes and their flat children-before-parents form.

Building the same structure twice gives the same object, so `a is b` is structural equality.
"""

from __future__ import annotations

import hashlib
import math
import struct
import weakref
from _weakref import _remove_dead_weakref
from typing import Any, Callable, Iterator, Sequence

from symcore import ops as _ops
from symcore.errors import ArityError, SymcoreError
from symcore.text import to_text
from symcore.walk import topo

__all__ = ["Expr", "var", "const", "param", "call", "Flat", "flatten", "unflatten"]

# The intern table: structural key -> weak reference to the one node with that structure.
# A plain dict of KeyedRefs (what WeakValueDictionary keeps inside) so that the constructor
# does one C-level lookup; a dead reference is removed by its callback unless the key has
# been rebuilt since (the C helper checks that the stored reference is the dead one).
_INTERN: dict[tuple, "_Ref"] = {}


class _Ref(weakref.ref):
    """A weak reference that knows its intern key (KeyedRef's Python __init__ costs 3x more)."""

    __slots__ = ("key",)


def _drop(ref: _Ref, _table: dict = _INTERN, _remove: Any = _remove_dead_weakref) -> None:
    # bound as defaults: at interpreter exit module globals may already be None
    _remove(_table, ref.key)


def _fkey(v: float, _pack: Callable[[float], bytes] = struct.Struct("<d").pack) -> bytes:
    # Constants are keyed by their bit pattern: 0.0 and -0.0 differ, every NaN text is one NaN.
    if v != v:
        v = math.nan
    return _pack(v)


class Expr:
    """One node.  `op` is an ops-table name or a leaf kind ('var', 'const', 'param').

    Equality is identity and the hash is the identity hash (both inherited from `object`, so
    dicts and sets of nodes never call back into Python): hash-consing makes identity
    structural equality."""

    # _canon and _skey: per-node caches of symcore.rules.canonical (canonical form, sort key);
    # a slot dies with its node, so these caches never keep an expression alive
    __slots__ = ("op", "args", "value", "name", "_size", "_depth", "_canon", "_skey",
                 "__weakref__")

    op: str
    args: tuple["Expr", ...]
    value: Any          # var/param: int index; const: float; op nodes: None
    name: str | None    # display name of a variable

    def __new__(cls, op: str, args: tuple["Expr", ...] = (), value: Any = None,
                name: str | None = None) -> "Expr":
        key = (op, args, _fkey(value) if op == "const" else value, name)
        ref = _INTERN.get(key)
        if ref is not None:
            node = ref()
            if node is not None:
                return node
        node = _new(cls)
        _set_op(node, op)
        _set_args(node, args)
        _set_value(node, value)
        _set_name(node, name)
        _set_canon(node, None)
        _set_skey(node, None)
        if args:
            if len(args) == 1:
                a = args[0]
                _set_size(node, 1 + a._size)
                _set_depth(node, 1 + a._depth)
            else:
                _set_size(node, 1 + sum([a._size for a in args]))
                _set_depth(node, 1 + max([a._depth for a in args]))
        else:
            _set_size(node, 1)
            _set_depth(node, 1)
        ref = _INTERN[key] = _Ref(node, _drop)
        ref.key = key
        return node

    def __setattr__(self, k: str, v: Any) -> None:
        raise AttributeError("Expr nodes are immutable")

    def __reduce__(self) -> tuple:
        return (unflatten, (flatten(self).rows,))

    def __copy__(self) -> "Expr":
        return self

    def __deepcopy__(self, memo: dict) -> "Expr":
        return self

    # -- folds ---------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of nodes of the tree (shared subtrees counted each time they occur)."""
        return self._size

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def is_leaf(self) -> bool:
        return not self.args

    def nodes(self) -> list["Expr"]:
        """Distinct nodes, children before parents (the DAG in topological order)."""
        return list(flatten(self).nodes)

    def variables(self) -> list[int]:
        """Sorted column indices used."""
        return sorted({n.value for n in self.nodes() if n.op == "var"})

    def parameters(self) -> list[int]:
        """Sorted parameter slots used."""
        return sorted({n.value for n in self.nodes() if n.op == "param"})

    @property
    def n_params(self) -> int:
        """Parameter vector length needed: 1 + the highest slot, or 0."""
        p = self.parameters()
        return p[-1] + 1 if p else 0

    def constants(self) -> list[float]:
        return [n.value for n in self.nodes() if n.op == "const"]

    def digest(self, constants: bool = True) -> str:
        """Stable structural digest (same in every process); with constants=False every constant
        is one placeholder, so expressions that differ only in constant values share it."""
        h = hashlib.blake2b(digest_size=16)
        for row in flatten(self).rows:
            op, kids, val = row
            if op == "const":
                val = repr(float(val)) if constants else "C"
            h.update(f"{op}|{','.join(map(str, kids))}|{val}\n".encode())
        return h.hexdigest()

    # -- printing -------------------------------------------------------------------------
    def __str__(self) -> str:
        return to_text(self)

    def __repr__(self) -> str:
        return f"Expr({str(self)!r})"

    # -- building with Python operators (structural, no simplification) -------------------
    def __add__(self, o: Any) -> "Expr":
        return call("add", self, lift(o))

    def __radd__(self, o: Any) -> "Expr":
        return call("add", lift(o), self)

    def __sub__(self, o: Any) -> "Expr":
        return call("sub", self, lift(o))

    def __rsub__(self, o: Any) -> "Expr":
        return call("sub", lift(o), self)

    def __mul__(self, o: Any) -> "Expr":
        return call("mul", self, lift(o))

    def __rmul__(self, o: Any) -> "Expr":
        return call("mul", lift(o), self)

    def __truediv__(self, o: Any) -> "Expr":
        return call("div", self, lift(o))

    def __rtruediv__(self, o: Any) -> "Expr":
        return call("div", lift(o), self)

    def __pow__(self, o: Any) -> "Expr":
        return call("pow", self, lift(o))

    def __rpow__(self, o: Any) -> "Expr":
        return call("pow", lift(o), self)

    def __neg__(self) -> "Expr":
        return call("neg", self)


_new = object.__new__
_set_op = Expr.__dict__["op"].__set__
_set_args = Expr.__dict__["args"].__set__
_set_value = Expr.__dict__["value"].__set__
_set_name = Expr.__dict__["name"].__set__
_set_size = Expr.__dict__["_size"].__set__
_set_depth = Expr.__dict__["_depth"].__set__
_set_canon = Expr.__dict__["_canon"].__set__
_set_skey = Expr.__dict__["_skey"].__set__


def var(index: int, name: str | None = None) -> Expr:
    """Column `index` of the data (0-based), optionally with a display name."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise SymcoreError(f"variable index must be a non-negative int, got {index!r}")
    if name is not None and (not isinstance(name, str) or not name.isidentifier()):
        raise SymcoreError(f"variable name must be an identifier, got {name!r}")
    return Expr("var", (), index, name)


def const(v: float) -> Expr:
    """A numeric literal (float64)."""
    return Expr("const", (), float(v))


def param(index: int) -> Expr:
    """Fittable parameter slot `index`; its value lives in a separate vector."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise SymcoreError(f"parameter index must be a non-negative int, got {index!r}")
    return Expr("param", (), index)


def call(op: str, *args: Expr) -> Expr:
    """Apply ops-table operator `op` to `args` (checked arity; powi needs an integer constant)."""
    o = _ops.get(op)
    if len(args) != o.arity:
        raise ArityError(f"{op} takes {o.arity} operand(s), got {len(args)}")
    for a in args:
        if not isinstance(a, Expr):
            raise SymcoreError(f"operand of {op} must be an Expr, got {type(a).__name__}")
    if op == "powi":
        k = args[1]
        if k.op != "const" or not math.isfinite(k.value) or k.value != int(k.value):
            raise SymcoreError("powi needs an integer constant exponent")
    return Expr(op, tuple(args))


def lift(x: Any) -> Expr:
    if isinstance(x, Expr):
        return x
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return const(float(x))
    try:
        import numpy as np
        if isinstance(x, np.floating | np.integer):
            return const(float(x))
    except ImportError:  # pragma: no cover
        pass
    raise SymcoreError(f"cannot use {type(x).__name__} as an expression")


# -------------------------------------------------------------------------------------------
# Flat form: rows (op, child indices, value), children before parents, last row is the root.

class Flat:
    """Children-before-parents form of one expression (shared subterms appear once)."""

    __slots__ = ("nodes", "rows", "index")

    def __init__(self, nodes: Sequence[Expr]) -> None:
        self.nodes: tuple[Expr, ...] = tuple(nodes)
        self.index: dict[Expr, int] = {n: i for i, n in enumerate(self.nodes)}
        self.rows: tuple[tuple[str, tuple[int, ...], Any], ...] = tuple(
            (n.op, tuple(self.index[a] for a in n.args),
             (n.value if n.name is None else (n.value, n.name)) if n.is_leaf else None)
            for n in self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Expr]:
        return iter(self.nodes)

    @property
    def root(self) -> Expr:
        return self.nodes[-1]


def flatten(expr: Expr) -> Flat:
    return Flat(topo([expr]))


def unflatten(rows: "Flat | Sequence[tuple[str, Sequence[int], Any]]") -> Expr:
    """Rebuild the expression from flat rows (the inverse of `flatten(e).rows`)."""
    if isinstance(rows, Flat):
        return rows.root
    built: list[Expr] = []
    for op, kids, val in rows:
        if op == "var":
            idx, nm = val if isinstance(val, tuple) else (val, None)
            built.append(var(idx, nm))
        elif op == "const":
            built.append(const(val))
        elif op == "param":
            built.append(param(val))
        else:
            built.append(call(op, *(built[k] for k in kids)))
    if not built:
        raise SymcoreError("empty flat form")
    return built[-1]


def map_leaves(expr: Expr, fn: Callable[[Expr], Expr]) -> Expr:
    """Rebuild `expr` with every leaf replaced by fn(leaf) (iterative)."""
    memo: dict[Expr, Expr] = {}
    for n in topo([expr]):
        memo[n] = fn(n) if n.is_leaf else Expr(n.op, tuple(memo[a] for a in n.args))
    return memo[expr]


def replace(expr: Expr, old: Expr, new: Expr) -> Expr:
    """`expr` with every occurrence of the subterm `old` replaced by `new` (iterative)."""
    memo: dict[Expr, Expr] = {}
    for n in topo([expr]):
        if n is old:
            memo[n] = new
        elif n.is_leaf:
            memo[n] = n
        else:
            memo[n] = Expr(n.op, tuple(memo[a] for a in n.args))
    return memo[expr]

