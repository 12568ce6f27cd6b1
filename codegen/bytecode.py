"""The one opcode table of symcore's tier-0 bytecode: the tier-0 evaluation tape (`eval.tape`)
and the tier-0 Jacobian interpreter's forward/reverse lists (`grad.tier0`) number operators
the same way, by their position in the ops table."""

from __future__ import annotations

from symcore.ops import OPS

__all__ = ["opcodes", "OP_VAR", "KIND_CONST", "KIND_PARAM"]

#: forward-list instruction "load data column a" of the Jacobian interpreter (no operator has
#: a negative opcode, so the table can grow without renumbering it)
OP_VAR = -1
#: `fills` rows (slot, kind, index): kind 0 takes pool[index], kind 1 params[index]
KIND_CONST = 0
KIND_PARAM = 1

_memo: tuple[tuple[str, ...], dict[str, int]] = ((), {})


def opcodes() -> dict[str, int]:
    """Opcode of every operator: its position in the ops table (operators registered later
    append to the table, so existing opcodes never change).  Do not mutate the result."""
    global _memo
    names = tuple(OPS)
    if names != _memo[0]:
        _memo = (names, {name: i for i, name in enumerate(names)})
    return _memo[1]
