"""Iterative parsers behind the readers: an operator-precedence (shunting-yard) infix parser and a
prefix-token parser, both with explicit stacks so 10,000-deep nesting never recurses."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from symcore import ops as _ops
from symcore.io.lexer import END, ID, NUM, SYM, Token
from symcore.errors import ArityError, ParseError, SymcoreError, UnknownOperatorError
from symcore.ir import Expr, call, const, param

NEG_PREC = 30  # unary minus: tighter than * and /, looser than ^ / ** (Python, Julia, symcore)


class Lit:
    """A numeric literal not yet committed to a node: unary minus folds into it, and it becomes a
    constant or a parameter slot (allocated in text order) when an operator consumes it."""

    __slots__ = ("value", "slot", "pos", "raw")

    def __init__(self, value: float, slot: int | None, pos: int, raw: bool = True) -> None:
        self.value = value
        self.slot = slot
        self.pos = pos
        self.raw = raw   # a bare literal token (not parenthesised, not yet negated)


@dataclass
class Ctx:
    """Per-read state: the source, the dialect, and parameter slot bookkeeping."""

    src: str
    dialect: str
    numbers: str = "const"
    placeholders: bool = True
    theta: list[float] | None = None
    next_slot: int = 0
    values: dict[int, float] = field(default_factory=dict)
    auto_slots: list[int] = field(default_factory=list)
    n_placeholders: int = 0

    def error(self, reason: str, pos: int | None) -> ParseError:
        return ParseError(reason, self.src, pos, self.dialect)

    def literal(self, value: float, pos: int) -> Lit:
        slot = None
        if self.numbers == "params":
            slot = self.new_slot()
        return Lit(value, slot, pos)

    def new_slot(self) -> int:
        s = self.next_slot
        self.next_slot += 1
        self.auto_slots.append(s)
        return s

    def placeholder(self, pos: int, name: str) -> Expr:
        if not self.placeholders:
            raise self.error(f"placeholder {name!r} not allowed (placeholders=False)", pos)
        s = self.new_slot()
        # theta gives the k-th placeholder's value, whatever slots literals took before it
        self.values[s] = self.theta_value(self.n_placeholders)
        self.n_placeholders += 1
        return param(s)

    def theta_value(self, k: int) -> float:
        if self.theta is not None and k < len(self.theta):
            return float(self.theta[k])
        return math.nan

    def value(self, x: "Lit | Expr") -> Expr:
        if isinstance(x, Expr):
            return x
        if x.slot is not None:
            self.values[x.slot] = x.value
            return param(x.slot)
        return const(x.value)


@dataclass
class Infix:
    """Syntax of one infix dialect."""

    binops: dict[str, tuple[str, int, bool]]       # token text -> (op, precedence, right assoc)
    funcs: dict[str, str]                          # callable identifier -> op name
    leaf: Callable[[list[Token], int, Ctx], tuple["Expr | Lit", int]]
    unary_minus: str = "any"                       # "any" | "literal" (only before a number)
    unary_plus: bool = False
    implicit_mul: bool = False                     # Bingo: `(a)(b)` is a product
    # (operator token, literal exponent) -> op: E2E's `(a)**2` is square, `(a)**3` is cube
    literal_powers: dict[tuple[str, float], str] = field(default_factory=dict)
    fn_prefix: str = ""                            # eggp's Numpy column: `np.sin`
    tight_neg_literal: bool = False                # eggp: `-2.5` is one literal token
    keep_const_args: dict[str, tuple[int, ...]] = field(default_factory=lambda: {"powi": (1,)})


def _build(ctx: Ctx, op: str, args: list["Expr | Lit"], pos: int,
           keep: tuple[int, ...] = ()) -> Expr:
    vals = [const(a.value) if (isinstance(a, Lit) and i in keep) else ctx.value(a)
            for i, a in enumerate(args)]
    try:
        return call(op, *vals)
    except ArityError as err:
        raise ArityError(f"{err} at position {pos}") from None
    except UnknownOperatorError:
        raise
    except SymcoreError as err:
        raise ctx.error(str(err), pos) from None


def parse_infix(toks: list[Token], syn: Infix, ctx: Ctx) -> "Expr | Lit":
    """Shunting-yard over `toks` (ending in END).  Operator stack entries:
    ("(", pos) group; ("f", op, nargs, pos) open call; ("u", op, prec, pos);
    ("b", op, prec, right, pos, token text)."""
    out: list[Any] = []
    stack: list[tuple] = []
    expect = True
    i = 0
    n = len(toks)

    def reduce_top() -> None:
        top = stack.pop()
        kind = top[0]
        if kind == "u":
            a = out.pop()
            if isinstance(a, Lit) and a.raw:
                out.append(Lit(-a.value, a.slot, a.pos, raw=False))
            else:
                out.append(_build(ctx, "neg", [a], top[3]))
        else:
            b = out.pop()
            a = out.pop()
            op = top[1]
            lp = syn.literal_powers.get((top[5], b.value)) \
                if syn.literal_powers and isinstance(b, Lit) and b.raw else None
            if lp is not None:
                out.append(_build(ctx, lp, [a], top[4]))
            else:
                out.append(_build(ctx, op, [a, b], top[4], syn.keep_const_args.get(op, ())))

    def reduce_for(prec: int, right: bool) -> None:
        while stack and stack[-1][0] in ("u", "b"):
            tp = stack[-1][2]
            if tp > prec or (tp == prec and not right):
                reduce_top()
            else:
                break

    while i < n:
        t = toks[i]
        if expect:
            if t.kind == NUM:
                out.append(ctx.literal(t.value, t.pos))
                expect = False
                i += 1
            elif t.kind == ID:
                name = t.text
                nxt = toks[i + 1] if i + 1 < n else None
                fname = name
                if syn.fn_prefix and name.startswith(syn.fn_prefix):
                    fname = name[len(syn.fn_prefix):]
                elif "." in name:
                    fname = ""
                called = nxt is not None and nxt.kind == SYM and nxt.text == "("
                if called and fname in syn.funcs:
                    stack.append(("f", syn.funcs[fname], 0, t.pos))
                    i += 2
                    if i < n and toks[i].kind == SYM and toks[i].text == ")":
                        raise ArityError(f"{name}() called without operands at position {t.pos}")
                    continue
                if name in syn.binops:
                    raise ctx.error(f"expected an operand, found operator {name!r}", t.pos)
                try:
                    leaf, i = syn.leaf(toks, i, ctx)
                except ParseError:
                    if called:
                        raise UnknownOperatorError(
                            f"unknown function {name!r} in dialect {ctx.dialect} "
                            f"(position {t.pos})") from None
                    if fname in syn.funcs:
                        raise ctx.error(f"function {name!r} used without '('", t.pos) from None
                    raise
                out.append(leaf)
                expect = False
            elif t.kind == SYM and t.text == "(":
                stack.append(("(", t.pos))
                i += 1
            elif t.kind == SYM and t.text == "-" and syn.tight_neg_literal and i + 1 < n \
                    and toks[i + 1].kind == NUM and toks[i + 1].pos == t.pos + 1:
                # Haskell's `show` prints a negative constant as `-0.89`: `-0.89 ^ x` is (-0.89)^x
                lit = ctx.literal(-toks[i + 1].value, t.pos)
                out.append(Lit(lit.value, lit.slot, lit.pos, raw=False))
                expect = False
                i += 2
            elif t.kind == SYM and t.text == "-":
                if syn.unary_minus == "literal" and not (i + 1 < n and toks[i + 1].kind == NUM):
                    raise ctx.error("unary minus is only allowed before a number here", t.pos)
                stack.append(("u", "neg", NEG_PREC, t.pos))
                i += 1
            elif t.kind == SYM and t.text == "+" and syn.unary_plus:
                i += 1
            elif t.kind == END:
                raise ctx.error("unexpected end of input (an operand is missing)",
                                t.pos if toks[:-1] else None)
            else:
                raise ctx.error(f"expected an operand, found {t.text!r}", t.pos)
        else:
            key = t.text if t.kind in (SYM, ID) else None
            if key is not None and key in syn.binops:
                op, prec, right = syn.binops[key]
                reduce_for(prec, right)
                stack.append(("b", op, prec, right, t.pos, t.text))
                expect = True
                i += 1
            elif t.kind == SYM and t.text == ")":
                while stack and stack[-1][0] in ("u", "b"):
                    reduce_top()
                if not stack:
                    raise ctx.error("unbalanced ')'", t.pos)
                top = stack.pop()
                if top[0] == "(":
                    a = out[-1]
                    if isinstance(a, Lit):
                        out[-1] = Lit(a.value, a.slot, a.pos, raw=False)
                else:
                    _, op, nargs, pos = top
                    nargs += 1
                    arity = _ops.OPS[op].arity
                    if nargs != arity:
                        raise ArityError(f"{op} takes {arity} operand(s), got {nargs} "
                                         f"(call at position {pos})")
                    args = out[len(out) - nargs:]
                    del out[len(out) - nargs:]
                    out.append(_build(ctx, op, args, pos, syn.keep_const_args.get(op, ())))
                i += 1
            elif t.kind == SYM and t.text == ",":
                while stack and stack[-1][0] in ("u", "b"):
                    reduce_top()
                if not stack or stack[-1][0] != "f":
                    raise ctx.error("',' outside a function call", t.pos)
                f = stack[-1]
                stack[-1] = (f[0], f[1], f[2] + 1, f[3])
                if f[2] + 1 >= _ops.OPS[f[1]].arity:
                    raise ArityError(f"{f[1]} takes {_ops.OPS[f[1]].arity} operand(s), got more "
                                     f"(call at position {f[3]})")
                expect = True
                i += 1
            elif t.kind == END:
                while stack and stack[-1][0] in ("u", "b"):
                    reduce_top()
                if stack:
                    raise ctx.error("unbalanced '(' (missing ')')", stack[-1][-1])
                if len(out) != 1:  # pragma: no cover - guarded by the state machine
                    raise ctx.error("malformed expression", t.pos)
                return out[0]
            elif syn.implicit_mul and (t.kind in (NUM, ID) or (t.kind == SYM and t.text == "(")):
                reduce_for(20, False)
                stack.append(("b", "mul", 20, False, t.pos, ""))
                expect = True
            else:
                what = repr(t.text) if t.text else "end"
                raise ctx.error(f"unexpected {what} after an operand", t.pos)
    raise ctx.error("unexpected end of input", len(ctx.src))  # pragma: no cover


@dataclass
class Prefix:
    """Syntax of one prefix-token dialect (tokens separated by commas and/or spaces)."""

    funcs: dict[str, str]
    leaf: Callable[[list[tuple[str, int]], int, Ctx], tuple["Expr | Lit", int]]


def parse_prefix(toks: list[tuple[str, int]], syn: Prefix, ctx: Ctx) -> Expr:
    """Prefix (Polish) tokens to an expression, with an explicit stack of open operators."""
    if not toks:
        raise ctx.error("empty expression", None)
    stack: list[list[Any]] = []   # [op, arity, pos, args]
    i, n = 0, len(toks)
    result: Any = None
    while i < n:
        tok, pos = toks[i]
        if result is not None:
            raise ctx.error(f"trailing token {tok!r} after a complete expression", pos)
        if tok in syn.funcs:
            op = syn.funcs[tok]
            stack.append([op, _ops.OPS[op].arity, pos, []])
            i += 1
            continue
        node, i = syn.leaf(toks, i, ctx)
        while True:
            if not stack:
                result = node
                break
            top = stack[-1]
            top[3].append(node)
            if len(top[3]) < top[1]:
                break
            stack.pop()
            node = _build(ctx, top[0], top[3], top[2], (1,) if top[0] == "powi" else ())
    if result is None:
        op, arity, pos, args = stack[-1]
        raise ArityError(f"{op} at position {pos} takes {arity} operand(s), got {len(args)} "
                         f"before the end of input")
    return ctx.value(result)
