"""The native prefix cache (codegen.eval.prefix_cache behind Session.score_prefix): a hit is the
very same token objects in order and returns exactly what a fresh score gives — after programs
are mutated in place, for lists, tuples and other sequences, 1 vs 1.0 vs True and 0.0 vs -0.0,
after eviction (LRU order kept, memory accounted), from several threads, and as a property
over random populations and edits."""

import gc
import pickle
import random
import sys
import sysconfig
import threading

import numpy as np
import pytest
import strategies
from hypothesis import given
from hypothesis import strategies as st
from strategies import prefix_tokens
from symcore.codegen import bytecode
from symcore.codegen.eval import prefix_cache

from symcore import SymcoreError
from symcore.session import Session
from symcore.session_prefix import is_slot_key
from symcore.session_stats import entry_bytes

#: where the native table must run (elsewhere score_prefix keeps its Python path)
NATIVE_HERE = (sys.implementation.name == "cpython" and not sysconfig.get_config_var(
    "Py_GIL_DISABLED") and sys.maxsize > 2**32)
pytestmark = pytest.mark.skipif(not NATIVE_HERE, reason="no native prefix cache here")

RUN = bytecode.runnable()
UN = tuple(n for n in strategies.UNARY if n in RUN)
BIN = tuple(n for n in strategies.BINARY if n in RUN)
SYMBOLS = {f"<{n}>": n for n in UN + BIN}

RNG = np.random.default_rng(5)
X = RNG.uniform(-2.0, 3.0, (97, 3))
Y = X[:, 0] - 2.0 * X[:, 1] * X[:, 2]


def fresh(programs, syms=SYMBOLS):
    """Every program scored on its own terms: no cache."""
    with np.errstate(all="ignore"):
        return Session(X, Y, cache=None).score_prefix([list(p) for p in programs], syms)


def score(s, programs, syms=SYMBOLS):
    with np.errstate(all="ignore"):
        return s.score_prefix(programs, syms)


def native_entries(s):
    """(entries of the session's LRU that are native-table entries, live table entries)."""
    return sum(map(is_slot_key, s._cache)), len(s._pxc)


def check_accounting(s):
    assert s.stats.bytes == sum(entry_bytes(k, v) for k, v in s._cache.items())
    n_lru, n_table = native_entries(s)
    assert n_lru == n_table
    # the native table's own memory is reported too (arrays and the token tuples it holds)
    px = s.__dict__.get("_pxc")
    if px is not None and n_table:
        held = [t for t in px._held if t is not None]
        assert len(held) == n_table
        assert s.stats.table_bytes == px.nbytes() >= sum(map(sys.getsizeof, held))
        assert s.stats.memory == s.stats.bytes + s.stats.table_bytes


def programs(rng, n, depth=4):
    def tree(d):
        r = rng.random()
        if d == 0 or r < 0.3:
            return [rng.randrange(3)] if rng.random() < 0.6 else [rng.uniform(-2, 2)]
        if r < 0.5:
            return [f"<{rng.choice(('sin', 'exp', 'neg'))}>", *tree(d - 1)]
        return [f"<{rng.choice(('add', 'sub', 'mul', 'div'))}>", *tree(d - 1), *tree(d - 1)]
    return [tree(depth) for _ in range(n)]


def test_the_native_table_runs_here():
    # the layout check and the self-test pass (a failing self-test would silently leave
    # every session on the Python path)
    assert prefix_cache.available()
    s = Session(X, Y)
    score(s, [["<add>", 0, 1.5]])
    assert s._pxc is not None and len(s._pxc) == 1


def test_hits_are_fresh_values_and_skip_scoring():
    progs = programs(random.Random(1), 60)
    progs += [progs[3], list(progs[5]), tuple(progs[7])]     # the same token objects again
    s = Session(X, Y)
    a = score(s, progs)
    np.testing.assert_array_equal(a, fresh(progs))
    assert s._pxc is not None and len(s._pxc) > 0           # the native table is in use
    h, m = s.stats.hits, s.stats.misses
    b = score(s, progs)
    np.testing.assert_array_equal(b, a)
    assert s.stats.hits - h == len(progs) and s.stats.misses == m
    check_accounting(s)


class _Fn:
    """A token the collector tracks, like gplearn's `_Function` objects."""


def test_entries_add_nothing_for_the_collector():
    # a search's heap is large: every object of ours the collector tracks brings its full
    # collections (over that heap) sooner; an entry adds none (its key is an int, its value a
    # float, its token tuple is untracked: only the table's object array refers to it)
    add, neg = _Fn(), _Fn()
    syms = {add: "add", neg: "neg"}
    progs = [[add, i % 3, float(i)] if i % 2 else [neg, add, 1, float(i)] for i in range(600)]
    s = Session(X, Y)
    score(s, progs[:1], syms)
    gc.collect()
    n0 = len(gc.get_objects())
    got = score(s, progs[1:], syms)
    assert len(gc.get_objects()) - n0 < 50
    np.testing.assert_array_equal(got, fresh(progs[1:], syms))
    assert s.stats.misses == 600
    np.testing.assert_array_equal(score(s, progs, syms), fresh(progs, syms))
    assert s.stats.hits == 600
    check_accounting(s)


def test_mutated_programs_never_hit_their_old_value():
    rng = random.Random(2)
    progs = programs(rng, 40)
    s = Session(X, Y)
    score(s, progs)
    # the list objects are re-used with other tokens: each edit is another program
    for p in progs[:10]:
        for j, t in enumerate(p):
            if type(t) is float:
                p[j] = t + 1.0
                break
        else:
            p[:] = ["<add>", *p, 1.5]
    progs[10][:], progs[11][:] = list(progs[11]), list(progs[10])       # swapped contents
    progs[12][:] = progs[13]                                            # now equal to 13
    for p in progs[14:20]:
        p[:] = ["<neg>", *p]
    got = score(s, progs)
    np.testing.assert_array_equal(got, fresh(progs))
    # and the old contents in new lists still hit nothing wrong
    check_accounting(s)


def test_tokens_equal_by_value_are_other_keys():
    syms = {"e": "exp", "i": "inv", "*": "mul", "+": "add"}
    s = Session(X, Y)
    z, nz = 0.0, -0.0
    one_f = 1.0
    base = [["e", "i", z], ["e", "i", nz], ["*", 1, 0], ["*", one_f, 0], ["+", 2, 2]]
    a = score(s, base, syms)
    np.testing.assert_array_equal(a, fresh(base, syms))
    assert a[0] == np.inf and a[1] != a[0]
    # the same values in other objects: misses or right values, never another program's
    same_bits = float.fromhex(one_f.hex())
    other = [["e", "i", nz], ["e", "i", z], ["*", one_f, 0], ["*", 1, 0], ["*", same_bits, 0],
             ["+", 2, 2]]
    b = score(s, other, syms)
    np.testing.assert_array_equal(b, fresh(other, syms))
    with pytest.raises(SymcoreError):
        score(s, [["*", True, 0]], syms)           # a bool is not a column, even hashed as 1


def test_containers_lists_tuples_and_other_sequences():
    class Seq:
        """A read-only sequence that is no list or tuple."""
        def __init__(self, items):
            self._items = list(items)

        def __len__(self):
            return len(self._items)

        def __getitem__(self, i):
            return self._items[i]

    progs = programs(random.Random(3), 30)
    mixed = [p if k % 3 == 0 else tuple(p) if k % 3 == 1 else Seq(p) for k, p in
             enumerate(progs)]
    want = fresh(progs)
    s = Session(X, Y)
    np.testing.assert_array_equal(score(s, mixed), want)
    h = s.stats.hits
    # every container kind finds the entry of the same tokens; outer tuples and generators too
    np.testing.assert_array_equal(score(s, tuple(progs)), want)
    assert s.stats.hits - h == len(progs)
    np.testing.assert_array_equal(score(s, (Seq(p) for p in progs)), want)
    np.testing.assert_array_equal(score(s, [np.array(p, dtype=object) for p in progs]), want)
    assert s.stats.hits - h == 3 * len(progs)
    check_accounting(s)


def test_eviction_keeps_values_order_and_memory():
    rng = random.Random(4)
    # distinct programs (each holds a constant object of its own)
    progs = [["<add>", *p, rng.uniform(5, 6)] for p in programs(rng, 12)]
    s = Session(X, Y, max_entries=5)
    want = fresh(progs)
    np.testing.assert_array_equal(score(s, progs), want)
    assert len(s) == 5 and s.stats.evictions == 7
    check_accounting(s)
    # LRU: the last five (7..11) are in; touching 7 keeps it when a new program comes in
    h = s.stats.hits
    np.testing.assert_array_equal(score(s, progs[7:8]), want[7:8])
    extra = [["<sin>", rng.uniform(0, 1)]]
    np.testing.assert_array_equal(score(s, extra), fresh(extra))
    np.testing.assert_array_equal(score(s, progs[7:8]), want[7:8])
    assert s.stats.hits - h == 2                        # kept: recently used
    h = s.stats.hits
    np.testing.assert_array_equal(score(s, progs[8:9]), want[8:9])
    assert s.stats.hits == h                            # the least recent one went
    # everything again, in other orders: right values, bounded, accounted
    for _ in range(3):
        order = rng.sample(range(len(progs)), len(progs))
        got = score(s, [progs[i] for i in order])
        np.testing.assert_array_equal(got, want[order])
        assert len(s) <= 5
        check_accounting(s)
    s.clear()
    assert len(s) == 0 and native_entries(s) == (0, 0)
    np.testing.assert_array_equal(score(s, progs), want)
    check_accounting(s)


def test_evicted_programs_freed_then_new_objects_at_their_addresses():
    """Tokens of evicted entries are released; new objects may take their addresses and must
    not meet the old values."""
    s = Session(X, Y, max_entries=4)
    syms = {"+": "add", "*": "mul"}
    rng = random.Random(6)
    for _ in range(200):
        progs = [["+", rng.uniform(-3, 3), "*", rng.randrange(3), rng.uniform(-3, 3)]
                 for _ in range(6)]
        np.testing.assert_array_equal(score(s, progs, syms), fresh(progs, syms))
        del progs
    check_accounting(s)
    assert len(s) == 4


def test_threads_share_one_session():
    rng = random.Random(7)
    pool_ = programs(rng, 80)
    want = fresh(pool_)
    s = Session(X, Y, max_entries=40)           # evictions while others look up
    errors = []

    def worker(seed):
        r = random.Random(seed)
        try:
            for _ in range(15):
                idx = [r.randrange(len(pool_)) for _ in range(r.randint(1, 60))]
                got = score(s, [pool_[i] for i in idx])
                np.testing.assert_array_equal(got, want[idx])
        except Exception as err:                 # reported in the main thread
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)                  # threads interleave as often as they can
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors[0]
    assert len(s) <= 40
    n_lru, n_table = native_entries(s)
    assert n_lru == n_table


def test_the_python_path_where_the_native_table_cannot_run(monkeypatch):
    """Without the native table (another interpreter) score_prefix keeps its Python cache:
    the same values, hits and misses."""
    monkeypatch.setattr(Session, "_prefix_cache_module", staticmethod(lambda: None))
    rng = random.Random(9)
    progs = [["<add>", *p, rng.uniform(5, 6)] for p in programs(rng, 30)]
    progs += progs[:5]
    s = Session(X, Y, max_entries=20)
    np.testing.assert_array_equal(score(s, progs), fresh(progs))
    h = s.stats.hits
    # the last 20 distinct programs entered are in
    np.testing.assert_array_equal(score(s, progs[10:30]), fresh(progs[10:30]))
    assert s.stats.hits - h == 20 and s.__dict__.get("_pxc") is None
    for p in progs[:12]:
        p[-1] = p[-1] + 1.0                      # in place: other programs now
    np.testing.assert_array_equal(score(s, progs), fresh(progs))
    assert len(s) <= 20
    assert s.stats.bytes == sum(entry_bytes(k, v) for k, v in s._cache.items())
    # equal by value and hash, other objects: never the other's value
    syms = {"e": "exp", "i": "inv", "*": "mul"}
    for a, b in (([["e", "i", 0.0]], [["e", "i", -0.0]]), ([["*", 1, 0]], [["*", 1.0, 0]])):
        np.testing.assert_array_equal(score(s, a, syms), fresh(a, syms))
        np.testing.assert_array_equal(score(s, b, syms), fresh(b, syms))
        assert fresh(a, syms)[0] != fresh(b, syms)[0]


def test_pickled_session_drops_the_native_table():
    progs = programs(random.Random(8), 10)
    s = Session(X, Y)
    score(s, progs)
    s2 = pickle.loads(pickle.dumps(s))
    assert len(s2) == 0 and s2.stats.bytes == 0 and len(s) > 0
    np.testing.assert_array_equal(score(s2, progs), fresh(progs))
    check_accounting(s2)


@st.composite
def _edits(draw):
    pop = draw(strategies.populations(n_vars=3, max_size=8, unary=UN, binary=BIN, powi=False))
    steps = draw(st.lists(st.tuples(st.sampled_from(["score", "leaf", "op", "swap", "copy"]),
                                    st.integers(0, 10**6), st.integers(0, 10**6)),
                          min_size=1, max_size=12))
    return pop, steps, draw(st.integers(1, 12))


@given(_edits())
def test_property_cached_scores_are_fresh_scores(case):
    pop, steps, max_entries = case
    progs = [prefix_tokens(e) for e in pop]
    s = Session(X, Y, max_entries=max_entries)
    un = [f"<{n}>" for n in UN]
    bi = [f"<{n}>" for n in BIN]
    for how, a, b in steps:
        p = progs[a % len(progs)]
        j = b % len(p)
        t = p[j]
        q = progs[b % len(progs)]
        if type(p) is tuple or (how == "swap" and type(q) is tuple):
            pass                                 # copies kept as tuples stay as they are
        elif how == "leaf" and (type(t) is int or type(t) is float):
            # another leaf: a column, a constant, or the same value in another object
            p[j] = (b % 3, float(t) + 0.5, -t if type(t) is float else float(t),
                    float.fromhex(float(t).hex()))[a % 4]
        elif how == "op" and type(t) is str:
            p[j] = (un if t[1:-1] in UN else bi)[a % (len(un) if t[1:-1] in UN else len(bi))]
        elif how == "swap":
            p[:], q[:] = list(q), list(p)
        if how == "copy":
            progs.append(list(p) if a % 2 else tuple(p))
        sub = [progs[(a + k) % len(progs)] for k in range(1 + b % len(progs))] + progs
        np.testing.assert_array_equal(score(s, sub), fresh(sub))
    assert len(s) <= max_entries
    check_accounting(s)


# -- the table itself (codegen.eval.prefix_cache.PrefixCache) ---------------------------------

class Tok:
    """A token object of a fixed size class (freed memory is handed out again first)."""
    __slots__ = ("v",)


def test_table_never_reads_a_tuple_it_let_go():
    """A removed entry's tuple is freed; a new object taking its token's address (CPython
    hands the freed block out again first) is a miss, not the old value."""
    pc = prefix_cache.PrefixCache()
    out = np.empty(1)
    for _ in range(20):
        a = Tok()
        # > 20 items: the tuple is not kept on a free list (its items stay in freed memory)
        [slot] = pc.insert([(a,) * 25], np.array([1.0]))
        pc.release([slot])
        del a
        b = Tok()
        hit, grp, _first = pc.lookup([[b] * 25], out)
        assert hit.size == 0 and grp.tolist() == [0] and len(pc) == 0
        del b


def test_table_holds_its_tuples_until_removed():
    pc = prefix_cache.PrefixCache()
    t = (Tok(),) * 25
    r0 = sys.getrefcount(t)
    [slot] = pc.insert([t], np.zeros(1))
    assert sys.getrefcount(t) == r0 + 1 and len(pc) == 1
    pc.release([slot])
    assert sys.getrefcount(t) == r0 and len(pc) == 0
    pc.release([slot])                           # no entry there: nothing happens
    assert sys.getrefcount(t) == r0 and len(pc) == 0


def test_table_refuses_what_it_cannot_read():
    pc = prefix_cache.PrefixCache()
    out = np.empty(2)
    for bad in ([[1], "ab"], [[1], range(2)], ([1], np.array([1]))):
        assert pc.lookup(bad, out) is None
    assert pc.lookup(range(2), out) is None
    with pytest.raises(TypeError):
        pc.insert([[1, 2]], np.zeros(1))
    with pytest.raises(ValueError):
        pc.lookup([[1]], out)                 # one value a program
    assert pc.insert([(1, 2), (1, 2)], np.zeros(2))[1] == -1      # the same tokens: one entry
    assert len(pc) == 1


@given(st.lists(st.tuples(st.sampled_from(["insert", "release", "lookup"]),
                          st.lists(st.integers(0, 30), max_size=40)), max_size=30))
def test_property_table_is_a_dict_of_token_identities(ops):
    """Inserts, removals and lookups against a dict keyed by the token objects' identities
    (growth, removed cells and rebuilds on the way)."""
    objs = [Tok() for _ in range(8)]
    pc = prefix_cache.PrefixCache()
    model: dict[tuple, tuple[int, float]] = {}      # id key -> (slot, value)
    held = {}                                       # id key -> tuple (keeps ids valid)
    counter = 0.0
    for how, nums in ops:
        progs = [tuple(objs[k % 8] for k in range(n % 7)) for n in nums]
        if how == "insert":
            fresh_ = list({tuple(map(id, p)): p for p in progs}.values())
            vals = np.arange(counter, counter + len(fresh_))
            counter += len(fresh_)
            slots = pc.insert(fresh_, vals)
            for p, s, v in zip(fresh_, slots, vals.tolist()):
                k = tuple(map(id, p))
                assert (s == -1) == (k in model)
                if s >= 0:
                    model[k], held[k] = (s, v), p
        elif how == "release":
            for n in nums:
                if model:
                    k = sorted(model)[n % len(model)]
                    pc.release([model.pop(k)[0]])
                    held.pop(k)
        else:
            lists = [list(p) for p in progs]
            out = np.full(len(lists), np.nan)
            hit, grp, first = pc.lookup(lists, out)
            want_hit = [model[tuple(map(id, p))][0] for p in progs if tuple(map(id, p)) in model]
            assert hit.tolist() == want_hit
            for i, p in enumerate(progs):
                k = tuple(map(id, p))
                if k in model:
                    assert grp[i] == -1 and out[i] == model[k][1]
                else:
                    g = grp[i]
                    assert g >= 0 and tuple(map(id, progs[first[g]])) == k
            assert len({tuple(map(id, progs[i])) for i in first.tolist()}) == first.size
        assert len(pc) == len(model)
