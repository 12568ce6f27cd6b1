"""symcore.metrics' fast paths give the same answers as the slow ones: edist's compiled
Zhang-Shasha equals zss; the on-disk cache of SRSD normal forms returns what was computed (and
is bypassed when off, untrusted or made by another pipeline version); method="symcore" builds
the SymPy object SymPy itself would read from the canonical form's text."""

import json
import os
import random
import sys

import pytest

pytest.importorskip("zss")
pytest.importorskip("edist")
sys.path.insert(0, os.path.dirname(__file__))

from test_edit_distance import DATA  # noqa: E402

from symcore.metrics import MetricsError, clear_cache, tree_edit_distances  # noqa: E402
from symcore.metrics import diskcache, edit_distance, trees  # noqa: E402

LABELS = ("Add", "Mul", "Pow", "sin", "x0", "x1", "Const")


def _random_tree(rng: random.Random, size: int) -> tuple:
    """A random ordered tree of `size` nodes (labels from a small alphabet: many equal)."""
    if size == 1:
        return (rng.choice(LABELS), ())
    rest, kids = size - 1, []
    while rest:
        k = rng.randint(1, rest)
        kids.append(_random_tree(rng, k))
        rest -= k
    return (rng.choice(LABELS), tuple(kids))


def test_edist_equals_zss_on_random_trees():
    rng = random.Random(5)
    for _ in range(300):
        a = _random_tree(rng, rng.randint(1, 25))
        b = _random_tree(rng, rng.randint(1, 25))
        for norm in (False, True):
            assert (trees.tree_distance(a, b, norm, backend="edist")
                    == trees.tree_distance(a, b, norm, backend="zss")), (a, b)


def test_edist_equals_zss_on_srsd_formulas():
    import sympy
    with open(DATA) as f:
        ts = [trees.sympy_tree(sympy.sympify(r["sympy"])) for r in json.load(f)[::4]]
    for a, b in zip(ts, ts[1:] + ts[:1]):
        assert (trees.tree_distance(a, b, False, backend="edist")
                == trees.tree_distance(a, b, False, backend="zss"))


def test_deep_tree_and_bad_backend():
    chain = ("x0", ())
    for i in range(400):            # deeper than zss's or a recursive walk's comfort
        chain = (("sin", "cos")[i % 2], (chain,))
    other = ("Add", (chain, ("x1", ())))
    assert trees.tree_distance(other, chain, False, backend="edist") == 2.0
    assert trees.tree_distance(chain, chain) == 0.0
    with pytest.raises(MetricsError, match="backend"):
        trees.tree_distance(chain, chain, backend="apted")


@pytest.fixture()
def disk(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("SYMCORE_CACHE", str(d))
    clear_cache()
    yield d
    clear_cache()


PAIRS = [("x0*x1 + 1.5", "x0*x1"), ("sin(x0)/x1", "cos(x0)/x1")]


def _no_workers(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("computed again instead of read from the disk cache")
    monkeypatch.setattr(edit_distance, "run_forms", refuse)


def test_disk_cache_serves_a_second_run(disk, monkeypatch):
    first = tree_edit_distances(PAIRS, method="srsd", timeout=60)
    assert (disk / "metrics" / "forms.sqlite").exists()
    clear_cache()                   # this process forgets; the disk remembers
    _no_workers(monkeypatch)
    again = tree_edit_distances(PAIRS, method="srsd", timeout=60)
    assert [(r.distance, r.pred_form, r.true_form) for r in again] == \
           [(r.distance, r.pred_form, r.true_form) for r in first]


def test_disk_cache_misses_for_another_pipeline_version(disk, monkeypatch):
    tree_edit_distances(PAIRS[:1], method="srsd", timeout=60)
    clear_cache()
    monkeypatch.setattr(diskcache, "PIPELINE_VERSION", "other")
    assert diskcache.get_many("srsd", list(PAIRS[0])) == {}
    _no_workers(monkeypatch)
    with pytest.raises(AssertionError, match="computed again"):
        tree_edit_distances(PAIRS[:1], method="srsd", timeout=60)


def test_disk_cache_off_or_untrusted(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMCORE_CACHE", "")
    assert diskcache.cache_path() is None
    diskcache.put_many("srsd", [("x0", "ok", "x0", ["x0", []], "")])
    assert diskcache.get_many("srsd", ["x0"]) == {}
    d = tmp_path / "shared"
    (d / "metrics").mkdir(parents=True)
    os.chmod(d / "metrics", 0o777)
    monkeypatch.setenv("SYMCORE_CACHE", str(d))
    assert diskcache.cache_path() is None       # writable by others: never read
    os.chmod(d / "metrics", 0o700)
    assert diskcache.cache_path() == d / "metrics" / "forms.sqlite"
    diskcache.put_many("srsd", [("x0", "ok", "x0", ["x0", []], "")])
    assert diskcache.get_many("srsd", ["x0", "x1"]) == {"x0": ("ok", "x0", ["x0", []], "")}
    diskcache.clear()
    assert diskcache.get_many("srsd", ["x0"]) == {}


def test_timeouts_are_not_cached(disk):
    r = tree_edit_distances([("2**(10**12) * x0", "x0")], method="srsd", timeout=2)[0]
    assert r.status == "timeout"
    assert diskcache.get_many("srsd", ["2**(10**12) * x0"]) == {}
    assert "x0" in diskcache.get_many("srsd", ["x0"])


def test_symcore_tree_is_what_sympy_reads_from_the_text():
    import sympy
    from symcore.io.readers import read
    from symcore.rules.canonical import canonical
    with open(DATA) as f:
        texts = [r["sympy"] for r in json.load(f)]
    same = 0
    for t in texts:
        obj = trees._plain_sympy(canonical(read(t, "sympy"), "equivalent"))
        same += trees.sympy_tree(obj) == trees.sympy_tree(sympy.sympify(str(obj)))
    # SymPy's printing is not always idempotent (-(a + b)/c prints as a Mul it then
    # re-reads with the -1 distributed); all but a handful coincide
    assert same >= len(texts) - 4, same
    # where SymPy's assumptions matter, symbols are sympify's plain ones (no real=True:
    # sqrt(x**2) stays a power, not Abs(x))
    for t in ("sqrt(x0**2)", "x0/sqrt(-x1**2)", "log(exp(x0))", "(x0**2)**0.5 + x1",
              "exp(log(x1))*x0", "acos(cos(x0))"):
        form, tree = trees.symcore_form(t)
        assert tree == trees.sympy_tree(sympy.sympify(form)), t
    # over the reals SymPy would make this -I*x0/Abs(x1)
    assert "I" not in trees.symcore_form("x0/sqrt(-x1**2)")[0]


def test_symcore_memo_does_not_change_trees():
    import sympy
    with open(DATA) as f:
        texts = [r["sympy"] for r in json.load(f)][::10]
    warm = [trees.symcore_form(t)[1] for t in texts]
    trees._SYMPY.clear()
    trees._TREES.clear()
    cold = [trees.symcore_form(t)[1] for t in reversed(texts)][::-1]
    assert warm == cold
    # and each equals the memo-free tree of the same object
    from symcore.io.readers import read
    from symcore.rules.canonical import canonical
    for t, tr in zip(texts, warm):
        obj = trees._plain_sympy(canonical(read(t, "sympy"), "equivalent"))
        assert trees.sympy_tree(obj) == tr
    # SymPy keeps 1.0*x0 as a Mul (the reference substitutes 1.0 -> 1); symcore's form has no 1.0
    assert trees.sympy_tree(sympy.sympify("1.0*x0 + 2"))[1][1][0] == "Mul"
    assert trees.symcore_form("1.0*x0 + 2")[1] == ("Add", (("Const", ()), ("x0", ())))
    assert trees.symcore_form("x0**1.0*x1")[1] == ("Mul", (("x0", ()), ("x1", ())))
