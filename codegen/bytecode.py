"""The one opcode table of symcore's tier-0 bytecode: the tier-0 evaluation tape (`eval.tape`)
and the tier-0 Jacobian interpreter's forward/reverse lists (`grad.tier0`) number operators
the same way, by their position in the ops table."""

from __future__ import annotations

from symcore.ops import OPS, generation

__all__ = ["opcodes", "runnable", "OP_VAR", "OP_CONST", "OP_ROOT", "KIND_CONST", "KIND_PARAM"]

#: forward-list instruction "load data column a" of the Jacobian interpreter (no operator has
#: a negative opcode, so the table can grow without renumbering it)
OP_VAR = -1
#: instructions of the shared (hash-consed) population tape (`eval.dag`), far above any
#: operator: (OP_CONST, dst, 0, i) broadcasts pool[i] into slot dst; (OP_ROOT, 0, s, c) hands
#: slot s to the caller as candidate c's value for the current row block
OP_CONST = 1 << 30
OP_ROOT = OP_CONST + 1
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


_runnable: dict[tuple[bool, int], frozenset[str]] = {}


def runnable(derivatives: bool = False) -> frozenset[str]:
    """Operators the tier-0 interpreters can run: those with an LLVM lowering (and, with
    `derivatives`, derivative templates too).  A registered op lacking them is left out of
    the interpreters' opcode switch, so it costs only the expressions that use it (a typed
    CompileError naming the op at packing), never the rest of the population."""
    from symcore.codegen.llvm.lower import LOWER
    key = (derivatives, generation())   # bumped by every (un)registration
    hit = _runnable.get(key)
    if hit is None:
        hit = frozenset(n for n, o in OPS.items() if n in LOWER and (
            not derivatives or n == "powi" or o.deriv is not None))
        if len(_runnable) > 64:
            _runnable.clear()
        _runnable[key] = hit
    return hit
