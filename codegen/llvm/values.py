"""Value helpers every IR generator shares: constants broadcast over lanes (`splat`, memoised),
expression literals (`literal`, never memoised), run-time scalars broadcast over lanes
(`broadcast`), vector types and element pointers."""

from __future__ import annotations

import struct

from llvmlite import ir

__all__ = ["splat", "literal", "broadcast", "vector_type", "ptr_at"]

_F64 = ir.DoubleType()
_I32 = ir.IntType(32)

_SPLATS: dict[tuple[int, bytes], tuple[ir.Type, ir.Constant]] = {}


def splat(ty: ir.Type, v: float) -> ir.Constant:
    """The constant `v` in type `ty` (broadcast over lanes for a vector type)."""
    # cached by the type's identity (llvmlite types hash by printing themselves); an entry
    # keeps its type alive so the id is not reused while cached
    # keyed on the bit pattern: -0.0 == 0.0 as floats, yet 1/-0.0 must stay -inf
    key = (id(ty), struct.pack("<d", float(v)))
    hit = _SPLATS.get(key)
    if hit is not None and hit[0] is ty:
        return hit[1]
    c = literal(ty, v)
    if len(_SPLATS) > 2048:
        _SPLATS.clear()
    _SPLATS[key] = (ty, c)
    return c


def literal(ty: ir.Type, v: float) -> ir.Constant:
    """An expression's literal as a constant of `ty`, built afresh (generators use this for
    literals taken from expressions, so the memo of `splat` only ever holds generator
    constants)."""
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [ir.Constant(ty.element, float(v))] * ty.count)
    return ir.Constant(ty, float(v))


def broadcast(b: ir.IRBuilder, vt: ir.Type, s: ir.Value) -> ir.Value:
    """A run-time scalar `s` in every lane of vector type `vt` (`s` itself for a scalar type)."""
    if not isinstance(vt, ir.VectorType):
        return s
    u = ir.Constant(vt, ir.Undefined)
    v = b.insert_element(u, s, ir.Constant(_I32, 0))
    return b.shuffle_vector(v, u, ir.Constant(ir.VectorType(_I32, vt.count), [0] * vt.count))


def vector_type(lanes: int, element: ir.Type = _F64) -> ir.Type:
    """`<lanes x element>`, or the element itself for one lane."""
    return element if lanes == 1 else ir.VectorType(element, lanes)


def ptr_at(b: ir.IRBuilder, base: ir.Value, offset: ir.Value, vt: ir.Type) -> ir.Value:
    """Pointer to the `vt` value at element `offset` of `base` (an element pointer)."""
    p = b.gep(base, [offset])
    return b.bitcast(p, vt.as_pointer()) if isinstance(vt, ir.VectorType) else p
