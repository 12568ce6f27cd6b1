"""The bundled example is reproducible and faithful to its AI Feynman formula; the run pipeline
works from Python as well as from the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import symcore
from symcore.app import example
from symcore.errors import DataError
from symcore.app.report import format_report, result_json
from symcore.app.run import load_csv, run


def test_committed_files_are_what_the_generator_writes(tmp_path):
    pop, data = example.write_example(tmp_path)
    bpop, bdata = example.bundled_paths()
    assert pop.read_bytes() == bpop.read_bytes()
    assert data.read_bytes() == bdata.read_bytes()


def test_true_expr_is_the_ai_feynman_formula():
    rec = example.formula()
    assert rec["name"] == "I.6.2"
    names = [v["name"] for v in rec["variables"]]
    syms = sympy.symbols(names)
    f = sympy.lambdify(syms, sympy.sympify(rec["formula"], locals=dict(zip(names, syms))),
                       "numpy")
    X, y, cols = example.example_data(200, seed=3)
    assert cols == names + [rec["output"]]
    for j, v in enumerate(rec["variables"]):
        assert v["low"] <= X[:, j].min() and X[:, j].max() <= v["high"]
    np.testing.assert_allclose(y, f(*X.T), rtol=1e-14)
    np.testing.assert_allclose(symcore.evaluate(example.true_expr(), X), y, rtol=0)


def test_population_is_seeded_and_shaped_like_a_search():
    a = example.example_population(400, seed=7)
    assert a == example.example_population(400, seed=7)
    assert a != example.example_population(400, seed=8)
    assert len(a) == 400
    distinct = set(a)
    assert len(distinct) < 0.7 * len(a)            # many exact duplicates
    pop = symcore.read_many(a, dialect=example.DIALECT)
    X, y, _ = example.example_data(300)
    vals = np.array([symcore.evaluate(e, X) for e in pop.exprs])
    err = np.mean((vals - y) ** 2, axis=1)
    assert np.sum(err < 1e-12) > 5                 # right answers with accurate constants
    right = {t for t, e in zip(a, err) if e < 1e-12}
    assert len(right) >= 2                         # ... written in more than one way
    assert np.sum((err > 1e-8) & (err < 1e-3)) > 20  # right structure, constants off
    assert np.sum(~(err < 1e-2)) > 50              # wrong candidates (or NaN somewhere)


def test_run_from_python_and_reports():
    X, y, names = example.example_data(150, seed=2)
    lines = example.example_population(120, seed=5) + ["sin(X1"]
    res = run(lines, X, y, features=names[:2], target=names[2], metric="mse")
    assert res.n_lines == 121 and res.n_inputs == 120 and len(res.errors) == 1
    assert res.errors[0][0] == 121
    assert sum(c.inputs for c in res.candidates) == 120
    assert res.candidates[0].score <= res.candidates[-1].score or \
        not np.isfinite(res.candidates[-1].score)
    losses = [c.score for c in res.candidates if np.isfinite(c.score)]
    assert losses == sorted(losses)
    for c in res.candidates[:5]:  # the reported score is the expression's real score
        want = np.mean((symcore.evaluate(c.expr, X) - y) ** 2)
        assert c.score == pytest.approx(want, rel=1e-9, abs=1e-24)
    text = format_report(res, top=5)
    assert "sigma" in text and "theta" in text and "1 unreadable" in text
    doc = result_json(res, top=3)
    assert len(doc["models"]) == 3 and doc["summary"]["unreadable"] == 1
    with pytest.raises(DataError, match="metric"):
        run(lines, X, y, metric="accuracy")
    with pytest.raises(DataError, match="rows"):
        run(lines, X, y[:-1])
    Xn = X.copy()
    Xn[7, 1] = np.nan
    with pytest.raises(DataError, match="row 7, column 1"):
        run(lines, Xn, y)
    with pytest.raises(DataError, match="y has 1 non-finite"):
        run(lines, X, np.where(np.arange(len(y)) == 3, np.inf, y))


def test_load_csv_reads_the_bundled_data():
    _, data = example.bundled_paths()
    ds = load_csv(data)
    assert ds.features == ["sigma", "theta"] and ds.target == "f"
    assert ds.X.shape == (example.N_ROWS, 2) and ds.y.shape == (example.N_ROWS,)
    ds2 = load_csv(data, target="sigma")
    assert ds2.features == ["theta", "f"]
