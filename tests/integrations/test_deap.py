"""symcore.integrations.deap vs DEAP's own Python evaluation: translation, fitness, whole runs."""

from __future__ import annotations

import math
import operator
import random
from functools import partial

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from strategies import examples

deap = pytest.importorskip("deap")
from deap import algorithms, base, creator, gp, tools  # noqa: E402

import symcore  # noqa: E402
from symcore.errors import DataError, UnknownOperatorError  # noqa: E402
from symcore.integrations.deap import (ZDIV, Evaluator, Translator,  # noqa: E402
                                       is_protected_div, register_ops, unregister_ops)


@pytest.fixture(scope="module", autouse=True)
def _deap_ops():
    """The ops the integration registers (zdiv, libm_*) do not leak into other test modules."""
    yield
    unregister_ops()


def protectedDiv(left, right):  # DEAP's examples/gp/symbreg.py, verbatim
    try:
        return left / right
    except ZeroDivisionError:
        return 1


def symbreg_pset(n_args: int = 1, ephemeral: str = "int") -> gp.PrimitiveSet:
    """DEAP's symbolic-regression example primitive set (ARG0 renamed x, like the example)."""
    pset = gp.PrimitiveSet("MAIN", n_args)
    pset.addPrimitive(operator.add, 2)
    pset.addPrimitive(operator.sub, 2)
    pset.addPrimitive(operator.mul, 2)
    pset.addPrimitive(protectedDiv, 2)
    pset.addPrimitive(operator.neg, 1)
    pset.addPrimitive(math.cos, 1)
    pset.addPrimitive(math.sin, 1)
    if ephemeral == "int":
        pset.addEphemeralConstant("rand101", partial(random.randint, -1, 1))
    else:
        pset.addEphemeralConstant("randu11", partial(random.uniform, -1, 1))
    pset.renameArguments(ARG0="x")
    return pset


PSET = symbreg_pset()
PSET2 = symbreg_pset(2, "float")

if not hasattr(creator, "SymcoreDeapFitnessMin"):
    creator.create("SymcoreDeapFitnessMin", base.Fitness, weights=(-1.0,))
    creator.create("SymcoreDeapIndividual", gp.PrimitiveTree,
                   fitness=creator.SymcoreDeapFitnessMin)


def python_values(tree, pset, X) -> np.ndarray:
    """DEAP's compiled function row by row on Python floats; NaN where it raises."""
    func = gp.compile(tree, pset)
    out = []
    for row in X.tolist():
        try:
            out.append(float(func(*row)))
        except (ArithmeticError, ValueError):
            out.append(math.nan)
    return np.array(out)


def python_fitness(individual, pset, rows, ys):
    """DEAP's example evaluation (fsum of squared errors / rows), +inf where it raises or is not
    finite: the documented policy of the Evaluator."""
    func = gp.compile(individual, pset)
    try:
        v = math.fsum((func(*r) - t) ** 2 for r, t in zip(rows, ys)) / len(rows)
    except (ArithmeticError, ValueError):
        return (math.inf,)
    return (v if math.isfinite(v) else math.inf,)


def data(n: int, n_args: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, n_args))
    x = X[:, 0]
    y = x ** 4 + x ** 3 + x ** 2 + x + (0.5 * X[:, 1] if n_args > 1 else 0.0)
    return X, y


# -- translation ---------------------------------------------------------------------------------

@settings(max_examples=examples(1.0))
@given(seed=st.integers(0, 2 ** 32 - 1), height=st.integers(1, 6),
       two=st.booleans())
def test_translation_matches_compiled_tree(seed, height, two):
    pset = PSET2 if two else PSET
    random.seed(seed)
    tree = gp.PrimitiveTree(gp.genHalfAndHalf(pset, 1, height))
    X = np.random.default_rng(seed).uniform(-3, 3, (40, len(pset.arguments)))
    X[::7] = 0.0                         # exact zeros reach protectedDiv's divisor
    e = Translator(pset).translate(tree)
    assert e is not None
    ref = python_values(tree, pset, X)
    got = symcore.evaluate(e, X)
    ok = ~np.isnan(ref)                  # rows where DEAP's function returned
    np.testing.assert_array_equal(got[ok], ref[ok])


def test_arguments_follow_pset_order_and_names():
    pset = gp.PrimitiveSet("MAIN", 3)
    pset.addPrimitive(operator.sub, 2)
    pset.renameArguments(ARG0="a", ARG2="c")
    tree = gp.PrimitiveTree.from_string("sub(c, sub(ARG1, a))", pset)
    e = Translator(pset).translate(tree)
    assert str(e) == str(symcore.var(2, "c") - (symcore.var(1, "ARG1") - symcore.var(0, "a")))
    X = np.array([[1.0, 10.0, 100.0]])
    assert symcore.evaluate(e, X)[0] == 100.0 - (10.0 - 1.0)


def test_constants_keep_full_precision_and_hash_cons():
    pset = gp.PrimitiveSet("MAIN", 1)
    pset.addPrimitive(operator.mul, 2)
    pset.addTerminal(0.1234567890123456789)
    pset.addTerminal(math.pi, name="PI")
    tree = gp.PrimitiveTree.from_string(f"mul(PI, mul({0.1234567890123456789!r}, ARG0))", pset)
    tr = Translator(pset)
    e = tr.translate(tree)
    assert e.args[0].value == math.pi and e.args[1].args[0].value == 0.1234567890123456789
    assert tr.translate(gp.PrimitiveTree(list(tree))) is e          # hash-consed


def test_numpy_and_math_primitives_map_by_function():
    pset = gp.PrimitiveSet("MAIN", 1)
    for fn, n in [(np.add, 2), (np.multiply, 2), (np.exp, 1), (math.log, 1), (np.sqrt, 1),
                  (math.tanh, 1), (np.maximum, 2), (operator.truediv, 2)]:
        pset.addPrimitive(fn, n)
    tr = Translator(pset)
    assert tr.prims == {"add": "add", "multiply": "mul", "exp": "exp", "log": "libm_log",
                        "sqrt": "sqrt", "tanh": "libm_tanh", "maximum": "max", "truediv": "div"}
    tree = gp.PrimitiveTree.from_string("maximum(log(sqrt(ARG0)), truediv(exp(ARG0), "
                                        "tanh(add(ARG0, ARG0))))", pset)
    X = np.linspace(0.1, 3.0, 30).reshape(-1, 1)
    # NumPy's SIMD exp/log on arrays may differ from its scalar (libm) path by an ulp
    np.testing.assert_allclose(symcore.evaluate(tr.translate(tree), X),
                               python_values(tree, pset, X), rtol=4e-16, atol=0)


def test_protected_div_recognised_by_code_not_by_name():
    assert is_protected_div(protectedDiv)

    def pdiv_float_one(a, b):
        try:
            return a / b
        except ZeroDivisionError:
            return 1.0

    def gplearn_like(a, b):                 # different semantics: |b| <= 0.001 -> 1
        return a / b if abs(b) > 0.001 else 1.0

    def almost(a, b):
        try:
            return a / b
        except ZeroDivisionError:
            return 2

    assert is_protected_div(pdiv_float_one)
    assert not is_protected_div(gplearn_like)
    assert not is_protected_div(almost)
    assert not is_protected_div(operator.truediv)
    shadowed: dict = {"ZeroDivisionError": OverflowError}    # same code, other semantics
    exec("def protectedDiv(left, right):\n    try:\n        return left / right\n"
         "    except ZeroDivisionError:\n        return 1\n", shadowed)
    assert not is_protected_div(shadowed["protectedDiv"])


SPECIAL = [0.0, -0.0, 1.0, -2.5, 1e-300, 5e-324, 1e300, math.inf, -math.inf, math.nan, 0.0005]


def test_zdiv_semantics_equal_protected_div_on_special_values():
    """protectedDiv returns 1 only for an exact (signed) zero divisor; NaN/inf divide."""
    register_ops()
    assert ZDIV in symcore.OPS
    a, b = np.meshgrid(np.array(SPECIAL), np.array(SPECIAL))
    X = np.column_stack([a.ravel(), b.ravel()])
    ref = np.array([float(protectedDiv(p, q)) for p, q in X.tolist()])
    e = symcore.call(ZDIV, symcore.var(0), symcore.var(1))
    np.testing.assert_array_equal(symcore.evaluate(e, X), ref)
    for tier in (0, 1):
        got = symcore.compile([e], tier=tier).predict(X)[0]
        np.testing.assert_array_equal(got, ref)


# -- fitness ------------------------------------------------------------------------------------

def _trees(pset, n, seed, height=5):
    random.seed(seed)
    return [creator.SymcoreDeapIndividual(gp.genHalfAndHalf(pset, 1, height)) for _ in range(n)]


def test_fitness_equals_deap_example_evaluation():
    X, y = data(200)
    X[::11] = 0.0
    pop = _trees(PSET, 150, seed=3)
    ev = Evaluator(PSET, X, y)
    got = [f[0] for f in ev.map(ev, pop)]
    rows, ys = [tuple(r) for r in X.tolist()], y.tolist()
    ref = [python_fitness(ind, PSET, rows, ys)[0] for ind in pop]
    # libm sin/cos and an exactly rounded sum: bit for bit DEAP's value (ties stay ties)
    assert got == ref
    fast = Evaluator(PSET, X, y, summation="native", exact_math=False)
    np.testing.assert_allclose([f[0] for f in fast.evaluate(pop)], ref, rtol=1e-9, atol=0)
    assert ev.stats["batches"] == 1 and ev.stats["native"] == 150 and ev.stats["python"] == 0
    assert ev(pop[0]) == (got[0],)       # the 1-tuple DEAP expects


def test_map_batches_only_the_evaluator():
    X, y = data(50)
    ev = Evaluator(PSET, X, y)
    toolbox = base.Toolbox()
    toolbox.register("evaluate", ev)
    toolbox.register("map", ev.map)
    pop = _trees(PSET, 20, seed=4)
    first = list(toolbox.map(toolbox.evaluate, pop))
    assert ev.stats["batches"] == 1
    assert list(toolbox.map(len, pop)) == [len(p) for p in pop]        # plain map
    assert ev.stats["batches"] == 1
    assert list(toolbox.map(partial(ev), pop)) == first
    assert ev.stats["batches"] == 2
    assert list(toolbox.map(operator.add, [1, 2], [3, 4])) == [4, 6]


def test_unknown_primitive_falls_back_to_python_or_uses_a_mapped_op():
    def soft(a):                              # no op known for this function
        return a / (1.0 + abs(a))

    pset = symbreg_pset()
    pset.addPrimitive(soft, 1)
    X, y = data(60)
    rows, ys = [tuple(r) for r in X.tolist()], y.tolist()
    tree = creator.SymcoreDeapIndividual(gp.PrimitiveTree.from_string(
        "add(soft(x), mul(x, cos(x)))", pset))
    plain = creator.SymcoreDeapIndividual(gp.PrimitiveTree.from_string("mul(x, x)", pset))
    ev = Evaluator(pset, X, y)
    assert ev.translator.prims["soft"] is None
    with pytest.raises(UnknownOperatorError, match="soft"):
        ev.expr(tree)
    got = ev.evaluate([tree, plain])
    assert got[0] == python_fitness(tree, pset, rows, ys)        # Python's own fsum, exactly
    assert got[1][0] == pytest.approx(python_fitness(plain, pset, rows, ys)[0], rel=1e-12)
    assert ev.stats["python"] == 1 and ev.stats["native"] == 1
    # a mapping to an op (here an existing one whose semantics differ: the loss changes)
    ev2 = Evaluator(pset, X, y, ops={"soft": "tanh"})
    want = np.mean((np.tanh(X[:, 0]) + X[:, 0] * np.cos(X[:, 0]) - y) ** 2)
    assert ev2(tree)[0] == pytest.approx(want, rel=1e-12)
    assert ev2.stats["python"] == 0
    with pytest.raises(UnknownOperatorError, match="no_such_op"):
        Evaluator(pset, X, y, ops={"soft": "no_such_op"})


@pytest.mark.parametrize("metric", ["r2", "mae", "spearman"])
def test_python_fallback_uses_the_session_metric_and_weights(metric):
    def twice(a):
        return a + a

    pset = symbreg_pset()
    pset.addPrimitive(twice, 1)
    X, y = data(80)
    w = np.random.default_rng(1).uniform(0.1, 2.0, 80)
    ev = Evaluator(pset, X, y, metric=metric, weights=w)
    slow = gp.PrimitiveTree.from_string("sub(twice(sin(x)), x)", pset)
    fast = gp.PrimitiveTree.from_string("sub(add(sin(x), sin(x)), x)", pset)
    (a,), (b,) = ev.evaluate([slow, fast])
    assert ev.stats["python"] == 1 and ev.stats["native"] == 1
    assert a == pytest.approx(b, rel=1e-12) and a != pytest.approx(0.0, abs=1e-3)


def test_importing_symcore_does_not_import_deap():
    import subprocess
    import sys
    code = ("import sys, symcore, symcore.integrations; "
            "assert 'deap' not in sys.modules, 'deap imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_domain_errors_and_overflow_get_the_nonfinite_loss():
    pset = gp.PrimitiveSet("MAIN", 1)
    pset.addPrimitive(math.log, 1)
    pset.addPrimitive(math.exp, 1)
    pset.addPrimitive(operator.neg, 1)
    pset.addPrimitive(operator.add, 2)
    X = np.linspace(0.5, 2.0, 16)
    y = np.log(X)
    ind = gp.PrimitiveTree.from_string("log(neg(ARG0))", pset)          # math domain error
    big = gp.PrimitiveTree.from_string("exp(exp(exp(ARG0)))", pset)    # OverflowError
    ok = gp.PrimitiveTree.from_string("log(add(ARG0, ARG0))", pset)
    with pytest.raises(ValueError):
        gp.compile(ind, pset)(1.0)
    with pytest.raises(OverflowError):
        gp.compile(big, pset)(2.0)
    ev = Evaluator(pset, X, y)
    assert [f[0] for f in ev.evaluate([ind, big])] == [math.inf, math.inf]
    assert ev(ok)[0] == pytest.approx(math.log(2.0) ** 2, rel=1e-12)
    ev_nan = Evaluator(pset, X, y, nonfinite="nan")
    assert math.isnan(ev_nan(ind)[0])


def test_bad_data_raises_typed_errors():
    X, y = data(10, 2)
    with pytest.raises(DataError, match="one column per argument"):
        Evaluator(PSET, X, y)
    with pytest.raises(DataError):
        Evaluator(PSET, [["a"], ["b"]], [1.0, 2.0])


# -- whole runs: DEAP's own algorithms, plain Python evaluation vs the Evaluator ---------------

def _run(algo: str, use_symcore: bool, seed: int, n_points: int, pop_size: int, ngen: int,
         pset=PSET):
    X, y = data(n_points, len(pset.arguments), seed=seed)
    toolbox = base.Toolbox()
    toolbox.register("expr", gp.genHalfAndHalf, pset=pset, min_=1, max_=2)
    toolbox.register("individual", tools.initIterate, creator.SymcoreDeapIndividual,
                     toolbox.expr)
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    if use_symcore:
        ev = Evaluator(pset, X, y)
        toolbox.register("evaluate", ev)
        toolbox.register("map", ev.map)
    else:
        toolbox.register("evaluate", python_fitness, pset=pset,
                         rows=[tuple(r) for r in X.tolist()], ys=y.tolist())
    toolbox.register("select", tools.selTournament, tournsize=3)
    toolbox.register("mate", gp.cxOnePoint)
    toolbox.register("expr_mut", gp.genFull, min_=0, max_=2)
    toolbox.register("mutate", gp.mutUniform, expr=toolbox.expr_mut, pset=pset)
    limit = gp.staticLimit(key=operator.attrgetter("height"), max_value=17)
    toolbox.decorate("mate", limit)
    toolbox.decorate("mutate", limit)
    random.seed(seed)
    pop = toolbox.population(n=pop_size)
    hof = tools.HallOfFame(3)
    stats = tools.Statistics(lambda ind: ind.fitness.values)
    stats.register("avg", np.mean)
    stats.register("min", np.min)
    if algo == "eaSimple":
        pop, log = algorithms.eaSimple(pop, toolbox, 0.5, 0.1, ngen, stats=stats,
                                       halloffame=hof, verbose=False)
    else:
        pop, log = algorithms.eaMuPlusLambda(pop, toolbox, pop_size, pop_size, 0.5, 0.1, ngen,
                                             stats=stats, halloffame=hof, verbose=False)
    return log, [str(h) for h in hof], [str(p) for p in pop], [h.fitness.values[0] for h in hof]


def assert_same_run(a, b):
    log_a, hof_a, pop_a, hfit_a = a
    log_b, hof_b, pop_b, hfit_b = b
    assert len(log_a) == len(log_b)
    for ra, rb in zip(log_a, log_b):
        assert ra["nevals"] == rb["nevals"]
        for k in ("min", "avg"):
            if math.isfinite(ra[k]) or math.isfinite(rb[k]):
                assert rb[k] == pytest.approx(ra[k], rel=1e-9, abs=0), (ra["gen"], k)
            else:
                assert ra[k] == rb[k]
    assert hof_a == hof_b
    assert pop_a == pop_b
    np.testing.assert_allclose(hfit_b, hfit_a, rtol=1e-9, atol=0)


@pytest.mark.parametrize("algo,seed,pset", [("eaSimple", 318, PSET), ("eaSimple", 7, PSET2),
                                            ("eaMuPlusLambda", 11, PSET)])
def test_runs_identical_to_plain_deap(algo, seed, pset):
    plain = _run(algo, False, seed, n_points=40, pop_size=60, ngen=8, pset=pset)
    fast = _run(algo, True, seed, n_points=40, pop_size=60, ngen=8, pset=pset)
    assert_same_run(plain, fast)
