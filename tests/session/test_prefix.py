"""The prefix-token fast path and the public tier-0 API it uses: codegen.eval.prefix packs token
programs into the same tape values as the IR packer (predictions bit for bit), tape.from_arrays
refuses out-of-range tapes, Tier0Program.from_tape, Session.score_predictions, and the prefix
cache's identity rule (signed zeros, ints vs floats)."""

import numpy as np
import pytest
import strategies
from hypothesis import given
from strategies import prefix_tokens
from symcore.codegen import bytecode
from symcore.codegen.eval import tape as _tape
from symcore.codegen.eval.prefix import pack_prefix, symbol_table
from symcore.codegen.eval.tier0 import Tier0Program

from symcore import CompileError, DataError, SymcoreError, call, const, var
from symcore.ops import OPS
from symcore.session import Session

RUN = bytecode.runnable()
UN = tuple(n for n in strategies.UNARY if n in RUN)
BIN = tuple(n for n in strategies.BINARY if n in RUN)
SYMBOLS = {f"<{n}>": n for n in UN + BIN}     # string symbols, one per op

RNG = np.random.default_rng(11)
X = RNG.uniform(-2.0, 3.0, (131, 3))
Y = X[:, 0] - 2.0 * X[:, 1] * X[:, 2]


tokens = prefix_tokens


@given(strategies.populations(n_vars=3, max_size=10, unary=UN, binary=BIN, powi=False))
def test_prefix_packing_predicts_as_the_ir_packer(pop):
    progs = [tokens(e) for e in pop]
    Xc = np.ascontiguousarray(X.T)
    ref = np.empty((len(pop), X.shape[0]))
    Tier0Program(pop).predict_range(Xc, None, ref)
    prog = Tier0Program.from_tape(pack_prefix(progs, symbol_table(SYMBOLS), 3))
    assert prog.exprs == () and prog.n_candidates == len(pop)
    got = np.empty_like(ref)
    prog.predict_range(Xc, None, got)
    np.testing.assert_array_equal(got, ref)
    s = Session(X, Y)
    np.testing.assert_array_equal(s.predict_prefix(progs, SYMBOLS), s.predict(pop))
    np.testing.assert_array_equal(s.score_prefix(progs, SYMBOLS),
                                  Session(X, Y, cache=None).score(pop))


def test_from_arrays_refuses_out_of_range_tapes():
    t = pack_prefix([["<add>", 0, "<mul>", 1.5, 2]], symbol_table(SYMBOLS), 3)
    args = dict(n_vars=t.n_vars, n_scratch=t.n_scratch, n_nodes=t.n_nodes)
    ok = _tape.from_arrays(t.code, t.fills, t.pool, t.cands, **args)
    assert ok.n_candidates == 1 and ok.code.dtype == np.int32
    for field, row, col, value in (("code", 0, 1, 1), ("code", 0, 2, 99), ("code", 0, 0, 10**6),
                                   ("fills", 0, 2, 5), ("fills", 0, 0, 0), ("cands", 0, 1, 9),
                                   ("cands", 0, 4, -1)):
        arrays = {k: getattr(t, k).copy() for k in ("code", "fills", "cands")}
        arrays[field][row, col] = value
        with pytest.raises(CompileError):
            _tape.from_arrays(arrays["code"], arrays["fills"], t.pool, arrays["cands"], **args)
    with pytest.raises(CompileError):
        _tape.from_arrays(t.code, t.fills, t.pool, t.cands, n_vars=t.n_vars,
                          n_scratch=t.n_scratch, n_nodes=(1, 2))
    with pytest.raises(CompileError):
        Tier0Program.from_tape("not a tape")


def test_prefix_packing_refuses_bad_programs():
    table = symbol_table(SYMBOLS)
    for bad, err in (([["<add>", 0]], SymcoreError), ([["?", 0]], SymcoreError),
                     ([[True]], SymcoreError), ([[]], SymcoreError), ([[0, 1]], SymcoreError),
                     ([["<add>", 0, 3]], DataError), ([["<sin>", -1]], DataError)):
        with pytest.raises(err):
            pack_prefix(bad, table, 3)
    with pytest.raises(SymcoreError):
        symbol_table({1.5: "add"})
    with pytest.raises(SymcoreError):
        symbol_table({"^": "powi"})
    assert set(OPS) >= set(SYMBOLS.values())


def test_prefix_cache_keeps_signed_zeros_and_ints_apart():
    syms = {"e": "exp", "i": "inv", "*": "mul"}
    s = Session(X, Y)
    pos, neg = s.score_prefix([["e", "i", 0.0]], syms), s.score_prefix([["e", "i", -0.0]], syms)
    assert pos[0] == np.inf                      # exp(1/+0) overflows
    assert neg[0] == Session(X, Y).score([const(0.0)])[0]
    both = s.score_prefix([["e", "i", -0.0], ["e", "i", 0.0], ["*", 1, 0], ["*", 1.0, 0]], syms)
    assert both[0] == neg[0] and both[1] == pos[0]
    assert both[2] == Session(X, Y).score([var(1) * var(0)])[0]
    assert both[3] == Session(X, Y).score([const(1.0) * var(0)])[0]


def test_score_predictions_is_the_session_metric():
    pop = [var(0) * var(1), call("sin", var(2)), const(2.0)]
    for metric in ("mse", "r2", "pearson", "spearman"):
        s = Session(X, Y, metric=metric)
        P = s.predict(pop)
        np.testing.assert_allclose(s.score_predictions(P), s.score(pop), rtol=1e-12)
        np.testing.assert_allclose(s.score_predictions(P[0]), s.score(pop[:1]), rtol=1e-12)
    s = Session(X, Y)
    W = np.ones((3, X.shape[0]))
    np.testing.assert_allclose(s.score_predictions(s.predict(pop), W), s.score(pop), rtol=1e-12)
    for bad in (np.zeros((2, 5)), [["a"]], np.zeros((2, 3, X.shape[0]))):
        with pytest.raises(DataError):
            s.score_predictions(bad)
    with pytest.raises(DataError):
        s.score_predictions(s.predict(pop), -W)


def _random_programs(rng, n, size=9):
    """Random complete prefix programs over SYMBOLS (some repeated, some sharing subtrees)."""
    def tree(d):
        r = rng.random()
        if d == 0 or r < 0.3:
            return [int(rng.integers(3))] if rng.random() < 0.6 else [float(rng.normal())]
        if r < 0.5:
            return [f"<{UN[int(rng.integers(len(UN)))]}>", *tree(d - 1)]
        return [f"<{BIN[int(rng.integers(len(BIN)))]}>", *tree(d - 1), *tree(d - 1)]
    base = [tree(4) for _ in range(n)]
    return base + [["<add>", *p, *base[0]] for p in base[:size]] + base[:size]


def test_prefix_scores_do_not_depend_on_how_the_population_is_cut(monkeypatch):
    import symcore.session as session_mod
    progs = _random_programs(np.random.default_rng(3), 40)
    with np.errstate(all="ignore"):
        want = [Session(X, Y, cache=None, metric=m).score_prefix(progs, SYMBOLS)
                for m in ("mse", "pearson")]
        pred = Session(X, Y).predict_prefix(progs, SYMBOLS)
        monkeypatch.setattr(session_mod, "_PARALLEL_WORK", 0)
        for threads, scratch in (("2", 1 << 25), ("3", 1 << 25), ("7", 1 << 25), ("1", 0),
                                 ("2", 20_000)):
            # scratch: a tape needing more is packed in halves (0: one program a tape)
            monkeypatch.setattr(session_mod, "_SCRATCH_BYTES", scratch)
            monkeypatch.setenv("SYMCORE_THREADS", threads)
            got = [Session(X, Y, cache=None, metric=m).score_prefix(progs, SYMBOLS)
                   for m in ("mse", "pearson")]
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)
            np.testing.assert_array_equal(Session(X, Y).predict_prefix(progs, SYMBOLS), pred)


def test_prefix_cache_memory_is_the_sum_of_its_entries():
    from symcore.session_stats import entry_bytes
    rng = np.random.default_rng(4)
    s = Session(X, Y)
    for n in (5, 30, 12):
        with np.errstate(all="ignore"):
            s.score_prefix(_random_programs(rng, n, size=3), SYMBOLS)
            s.score_prefix(_random_programs(rng, n, size=2), SYMBOLS,
                           weights=rng.uniform(0, 1, (n + 2 * 2, X.shape[0])))
    assert s.stats.bytes == sum(entry_bytes(k, v) for k, v in s._cache.items())


def test_identity_classification_is_the_general_pass(monkeypatch):
    import symcore.codegen.eval.prefix as px
    syms = {object(): name for name in ("add", "mul", "sin", "pdiv", "neg")}
    add, mul, sin, pdiv, neg = syms
    progs = [[add, 0, 1.0], [mul, sin, 2, -0.0], [pdiv, neg, 1, 0.0], [2], [2.0], [1.0],
             [add, mul, 0, 1, sin, pdiv, 2, 0.25]]
    table = symbol_table(syms)
    n = sum(map(len, progs))
    assert px._by_identity(progs, n, table, 3) is not None      # the fast path is taken
    fast = px._classify(progs, table, 3)
    monkeypatch.setattr(px, "_by_identity", lambda *a: None)
    slow = px._classify(progs, table, 3)
    for f, s_ in zip(fast, slow):
        np.testing.assert_array_equal(f, s_)
        assert f.dtype == s_.dtype
    np.testing.assert_array_equal(np.signbit(fast[2]), np.signbit(slow[2]))
    monkeypatch.undo()
    # numpy scalars, a bool, a column past the small-int cache: the general pass decides
    for odd in ([add, np.int64(0), 1.5], [add, 0, np.float64(1.5)], [add, True, 0],
                [add, 300, 0], [add, 0, "x"]):
        assert px._by_identity([odd], len(odd), table, 400) is None
    s = Session(X, Y)
    e = [[add, np.int64(0), 1.5], [mul, 1, np.float64(2.0)]]
    np.testing.assert_array_equal(s.score_prefix(e, syms),
                                  s.score_prefix([[add, 0, 1.5], [mul, 1, 2.0]], syms))
    with pytest.raises(SymcoreError):
        s.score_prefix([[add, True, 0]], syms)
