"""The shared population tape (codegen.eval.dag, packed by prefix.pack_shared): predictions and
loss sums bit for bit those of tier 0 for every op, both dtypes, any block size and any
population around a candidate; subtrees shared across candidates run once; slots are reused;
bad programs and out-of-range tapes are refused before native code."""

from __future__ import annotations

import numpy as np
import pytest
import strategies
from hypothesis import given
from hypothesis import strategies as st
from strategies import prefix_tokens
from symcore.codegen import bytecode
from symcore.codegen.eval import dag
from symcore.codegen.eval.prefix import pack_prefix, pack_shared, symbol_table
from symcore.codegen.eval.tier0 import Tier0Program

from symcore.errors import CompileError, DataError, SymcoreError

RUN = bytecode.runnable()
UN = tuple(n for n in strategies.UNARY if n in RUN)
BIN = tuple(n for n in strategies.BINARY if n in RUN)
SYMBOLS = {f"<{n}>": n for n in UN + BIN}
TABLE = symbol_table(SYMBOLS)
RNG = np.random.default_rng(5)
X = RNG.uniform(-2.0, 3.0, (203, 3))          # 203 rows: a tail block for every block size
X[::17, 1] = 0.0                              # protected-op branches
Y = X[:, 0] * X[:, 1] - np.sin(X[:, 2])
W = RNG.uniform(0.0, 2.0, X.shape[0])


tokens = prefix_tokens


def _both(progs, dtype, block=None):
    """(tier 0 predictions, losses, weighted losses), then the same from the shared tape."""
    Xc = np.ascontiguousarray(X.T, dtype=dtype)
    y, w = Y.astype(dtype), W.astype(dtype)
    ref = Tier0Program.from_tape(pack_prefix(progs, TABLE, 3), dtype)
    got = dag.DagProgram(pack_shared(progs, TABLE, 3), dtype, block=block)
    out = []
    for p in (ref, got):
        pred = np.empty((len(progs), X.shape[0]), dtype=dtype)
        if p is ref:
            p.predict_range(Xc, None, pred)
            loss, loss_w = np.empty((len(progs), 2)), np.empty((len(progs), 2))
            p.loss_range(Xc, y, None, loss)
            p.loss_range(Xc, y, w, loss_w)
        else:
            p.predict(Xc, pred)
            loss, loss_w = p.loss(Xc, y), p.loss(Xc, y, w)
        out.append((pred, loss, loss_w))
    return out


@given(strategies.populations(n_vars=3, max_size=12, unary=UN, binary=BIN, powi=False),
       st.sampled_from(["float64", "float32"]), st.sampled_from([None, 8, 16, 64, 256]))
def test_shared_tape_is_tier0_bit_for_bit(pop, dtype, block):
    progs = [tokens(e) for e in pop]
    (p0, l0, w0), (p1, l1, w1) = _both(progs, dtype, block)
    np.testing.assert_array_equal(p1, p0)
    np.testing.assert_array_equal(l1, l0)
    np.testing.assert_array_equal(w1, w0)


def test_a_candidates_values_do_not_depend_on_its_population():
    base = [["<add>", "<mul>", 0, 1.5, "<sin>", 2], ["<pdiv>", 1, 0]]
    alone = _both(base, "float64")[1]
    crowd = [["<mul>", 1.5, 0], base[1], ["<sin>", 2]] + base + [["<exp>", "<mul>", 0, 1.5]]
    mixed = _both(crowd, "float64")[1]
    for a, b in zip(alone, mixed):
        np.testing.assert_array_equal(b[3:5], a)


def test_shared_subtrees_run_once_and_slots_are_reused():
    sub = ["<mul>", "<sin>", 0, "<add>", 1, 2.5]          # 3 operators, 1 constant
    progs = [["<add>", *sub, 0], ["<sub>", *sub, 1], sub, ["<neg>", *sub]]
    t = pack_shared(progs, TABLE, 3)
    code = t.code
    ops = code[(code[:, 0] != bytecode.OP_CONST) & (code[:, 0] != bytecode.OP_ROOT)]
    assert len(ops) == 3 + 3                      # the shared subtree once, then add, sub, neg
    assert (code[:, 0] == bytecode.OP_CONST).sum() == 1
    assert (code[:, 0] == bytecode.OP_ROOT).sum() == len(progs)
    # a long chain needs two scratch slots however long it is (one live value, one result)
    chain = [0]
    for k in range(200):
        chain = ["<add>", "<sin>", *chain, 2] if k % 2 else ["<mul>", *chain, 1]
    assert pack_shared([chain], TABLE, 3).n_scratch <= 2
    # equal constants of other objects share; 0.0 and -0.0 do not
    t = pack_shared([["<add>", 0, 0.0], ["<add>", 0, float("0.0")], ["<add>", 0, -0.0]],
                    TABLE, 3)
    assert (t.code[:, 0] == bytecode.OP_CONST).sum() == 2
    assert np.signbit(t.pool).tolist() == [False, True]


def test_pack_shared_refuses_bad_programs():
    for bad, err in (([["<add>", 0]], SymcoreError), ([["?", 0]], SymcoreError),
                     ([[True]], SymcoreError), ([[]], SymcoreError), ([[0, 1]], SymcoreError),
                     ([["<add>", 0, 1], ["<sin>"]], SymcoreError),
                     ([["<add>", 0, 3]], DataError), ([["<sin>", -1]], DataError)):
        with pytest.raises(err):
            pack_shared(bad, TABLE, 3)
    assert pack_shared([], TABLE, 3).n_candidates == 0


def test_from_arrays_refuses_out_of_range_tapes():
    t = pack_shared([["<add>", 0, "<mul>", 1.5, 2], [1]], TABLE, 3)
    args = dict(n_vars=t.n_vars, n_slots=t.n_slots, n_candidates=t.n_candidates,
                n_nodes=t.n_nodes)
    ok = dag.from_arrays(t.code, t.pool, **args)
    assert ok.n_candidates == 2 and ok.code.dtype == np.int32
    rows = {int(op): i for i, op in enumerate(t.code[:, 0])}
    c_row, r_row = rows[bytecode.OP_CONST], rows[bytecode.OP_ROOT]
    op_row = next(i for i, op in enumerate(t.code[:, 0]) if op < bytecode.OP_CONST)
    for row, col, value in ((op_row, 1, 0), (op_row, 1, t.n_slots), (op_row, 2, -1),
                            (op_row, 3, 99), (op_row, 0, 10**6), (c_row, 3, 5),
                            (c_row, 1, 1), (r_row, 3, 2), (r_row, 2, t.n_slots)):
        code = t.code.copy()
        code[row, col] = value
        with pytest.raises(CompileError):
            dag.from_arrays(code, t.pool, **args)
    with pytest.raises(CompileError):       # candidate 1 without a root
        dag.from_arrays(t.code[t.code[:, 3] != 1], t.pool, **args)
    with pytest.raises(CompileError):
        dag.DagProgram("not a tape")


def test_run_checks_arrays():
    p = dag.DagProgram(pack_shared([["<add>", 0, 2]], TABLE, 3))
    Xc = np.ascontiguousarray(X.T)
    with pytest.raises(DataError):
        p.loss(Xc[:2].copy(), Y)                       # the population reads column 2
    with pytest.raises(DataError):
        p.loss(Xc, Y[:-1].copy())
    with pytest.raises(DataError):
        p.loss(Xc, Y.astype(np.float32))
    with pytest.raises(DataError):
        p.predict(Xc, np.empty((1, X.shape[0] + 1)))
    with pytest.raises(DataError):
        p.predict(np.asfortranarray(Xc), np.empty((1, X.shape[0])))
