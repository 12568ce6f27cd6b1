"""A fast text builder for LLVM IR: the subset of `llvmlite.ir.IRBuilder` that the lowering
(lower.py, vecmath.py) uses, writing instruction text instead of building objects (tier 1)."""

from __future__ import annotations

from typing import Any

from llvmlite import ir

__all__ = ["TextBuilder", "TextValue"]

# -- a fast text builder ------------------------------------------------------------------------
# llvmlite.ir objects cost ~25 µs per instruction to build and print; a search loop compiles
# thousands of kernels, so the hot path writes IR text.  `TextBuilder` implements the part of
# `llvmlite.ir.IRBuilder` that the lowering (lower.py) uses, so both share one lowering per op.

# llvmlite types hash by printing themselves: cache by identity instead (entries keep their
# object alive, so an id is never reused while cached; cleared when large)
_TYPE_STR: dict[int, tuple[Any, str]] = {}
_CONST_REF: dict[int, tuple[Any, str]] = {}


def _ts(ty: ir.Type) -> str:
    hit = _TYPE_STR.get(id(ty))
    if hit is not None and hit[0] is ty:
        return hit[1]
    if len(_TYPE_STR) > 4096:
        _TYPE_STR.clear()
    s = str(ty)
    _TYPE_STR[id(ty)] = (ty, s)
    return s


class TextValue:
    """An SSA value of a `TextBuilder` (its LLVM type and its textual reference)."""

    __slots__ = ("type", "ref")

    def __init__(self, type: ir.Type, ref: str) -> None:  # noqa: A002 - mirrors llvmlite
        self.type = type
        self.ref = ref


def _ref(v: Any) -> str:
    if isinstance(v, TextValue):
        return v.ref
    hit = _CONST_REF.get(id(v))
    if hit is not None and hit[0] is v:
        return hit[1]
    r = v.get_reference()
    if isinstance(v, ir.Constant):
        if len(_CONST_REF) > 4096:
            _CONST_REF.clear()
        _CONST_REF[id(v)] = (v, r)   # keeps v alive, so the id stays unique
    return r


_I1 = ir.IntType(1)
_BOOL_VEC: dict[int, ir.VectorType] = {}


def _bool_type(ty: ir.Type) -> ir.Type:
    if isinstance(ty, ir.VectorType):
        bt = _BOOL_VEC.get(ty.count)
        if bt is None:
            bt = _BOOL_VEC[ty.count] = ir.VectorType(_I1, ty.count)
        return bt
    return _I1


_FCMP = {">": "gt", "<": "lt", "==": "eq", "!=": "ne", ">=": "ge", "<=": "le"}


class TextBuilder:
    """Duck-typed subset of `llvmlite.ir.IRBuilder` writing instruction text (declarations go
    to the real `module`)."""

    def __init__(self, module: ir.Module, prefix: str = "%v", inline_math: str = "call") -> None:
        # vecmath: "call" = math functions of vecmath.INLINE are calls to module-local helper
        # functions (their bodies are written once per module by `declarations`); "inline" =
        # their code is written in place
        self.inline_math = inline_math
        self.module = module
        self.lines: list[str] = []
        self._prefix = prefix
        self._n = 0

    def _new(self, ty: ir.Type, text: str) -> TextValue:
        name = f"{self._prefix}{self._n}"
        self._n += 1
        self.lines.append(f"  {name} = {text}")
        return TextValue(ty, name)

    def _bin(self, op: str, a: Any, b: Any) -> TextValue:
        return self._new(a.type, f"{op} {_ts(a.type)} {_ref(a)}, {_ref(b)}")

    def fadd(self, a: Any, b: Any, name: str = "") -> TextValue:
        return self._bin("fadd", a, b)

    def fsub(self, a: Any, b: Any, name: str = "") -> TextValue:
        return self._bin("fsub", a, b)

    def fmul(self, a: Any, b: Any, name: str = "") -> TextValue:
        return self._bin("fmul", a, b)

    def fdiv(self, a: Any, b: Any, name: str = "") -> TextValue:
        return self._bin("fdiv", a, b)

    def fneg(self, a: Any, name: str = "") -> TextValue:
        return self._new(a.type, f"fneg {_ts(a.type)} {_ref(a)}")

    def _fcmp(self, cond: str, a: Any, b: Any) -> TextValue:
        return self._new(_bool_type(a.type), f"fcmp {cond} {_ts(a.type)} {_ref(a)}, {_ref(b)}")

    def fcmp_ordered(self, op: str, a: Any, b: Any, name: str = "") -> TextValue:
        return self._fcmp("o" + _FCMP[op] if op in _FCMP else op, a, b)

    def fcmp_unordered(self, op: str, a: Any, b: Any, name: str = "") -> TextValue:
        return self._fcmp("u" + _FCMP[op] if op in _FCMP else op, a, b)

    def select(self, c: Any, a: Any, b: Any, name: str = "") -> TextValue:
        return self._new(a.type, f"select {_ts(c.type)} {_ref(c)}, {_ts(a.type)} {_ref(a)}, "
                                 f"{_ts(b.type)} {_ref(b)}")

    def call(self, fn: ir.Function, args: list[Any], name: str = "") -> TextValue:
        ret = fn.function_type.return_type
        text = f"call {_ts(ret)} @{fn.name}({', '.join(f'{_ts(a.type)} {_ref(a)}' for a in args)})"
        return self._new(ret, text)

    def add(self, a: Any, b: Any, name: str = "") -> TextValue:
        return self._bin("add", a, b)

    def shl(self, a: Any, b: Any, name: str = "") -> TextValue:
        return self._bin("shl", a, b)

    def xor(self, a: Any, b: Any, name: str = "") -> TextValue:
        return self._bin("xor", a, b)

    def lshr(self, a: Any, b: Any, name: str = "") -> TextValue:
        return self._bin("lshr", a, b)

    def bitcast(self, v: Any, ty: ir.Type, name: str = "") -> TextValue:
        return self._new(ty, f"bitcast {_ts(v.type)} {_ref(v)} to {_ts(ty)}")

    def shuffle_vector(self, a: Any, b: Any, mask: Any, name: str = "") -> TextValue:
        ty = ir.VectorType(a.type.element, mask.type.count)
        return self._new(ty, f"shufflevector {_ts(a.type)} {_ref(a)}, {_ts(b.type)} {_ref(b)}, "
                             f"{_ts(mask.type)} {_ref(mask)}")

    def extract_element(self, v: Any, idx: Any, name: str = "") -> TextValue:
        return self._new(v.type.element, f"extractelement {_ts(v.type)} {_ref(v)}, "
                                         f"{_ts(idx.type)} {_ref(idx)}")

    def insert_element(self, v: Any, x: Any, idx: Any, name: str = "") -> TextValue:
        return self._new(v.type, f"insertelement {_ts(v.type)} {_ref(v)}, {_ts(x.type)} "
                                 f"{_ref(x)}, {_ts(idx.type)} {_ref(idx)}")
