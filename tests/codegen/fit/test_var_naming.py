"""Variable numbering that cannot silently shift: 1-based names read as 0-based over data of the
same width are refused by fit, Kernel.score and the main job, with the fix named; a population
file's dialect is settled by every line."""

from __future__ import annotations

import numpy as np
import pytest

import symcore
from symcore.app.run import run
from symcore.codegen.fit.api import fit
from symcore.columns import check_not_shifted
from symcore.errors import DataError, DialectError
from symcore.io.files import read_many
from symcore.io.readers import detect_dialect

LINES = ["0.5*x_1 + sin(x_2)", "x_1*x_2 - 0.25", "cos(x_2) + 1.5*x_1*x_1"]


@pytest.fixture
def data():
    X = np.random.default_rng(0).uniform(0.5, 2.0, (30, 2))
    return X, 0.5 * X[:, 0] + np.sin(X[:, 1])


def test_shifted_population_is_refused_everywhere_with_the_fix(data):
    X, y = data
    shifted = [symcore.read(t, dialect="sympy") for t in LINES]   # x_1 -> column 1
    for call in (lambda: fit(shifted, X, y), lambda: fit(shifted[0], X, y),
                 lambda: symcore.compile(shifted).score(X, y),
                 lambda: run(LINES, X, y, dialect="sympy")):
        with pytest.raises(DataError, match=r'dialect="dysymnet".*var_base=1'):
            call()
    # read as the tool numbers them: no error, the right columns
    good = [symcore.read(t, dialect="dysymnet") for t in LINES]
    r = fit(good[0], X, y)
    assert r.loss < 1e-20
    assert np.isfinite(symcore.compile(good).score(X, y)).all()
    assert run(LINES, X, y, dialect="dysymnet").n_inputs == 3
    same = [symcore.read(t, dialect="sympy", var_base=1) for t in LINES]
    assert all(e is g for e, g in zip(same, good))


def test_check_leaves_populations_it_cannot_judge():
    x = [symcore.read(t, dialect="symcore") for t in ("x0 + x1", "x1", "x2*x1")]
    check_not_shifted(x, 3)              # uses x0
    check_not_shifted(x[1:], 4)          # x1..x2 of 4 columns: x3 unused, cannot tell
    check_not_shifted([symcore.read("1.5", dialect="symcore")], 0)
    with pytest.raises(DataError):
        check_not_shifted(x[1:], 2)


def test_one_line_with_x_0_settles_the_dialect():
    lines = ["2.5"] + LINES * 5 + ["x_0*x_1 + 2.0"]   # a line every dialect reads comes first
    pop = read_many(lines, on_error="collect")
    assert pop.dialect == "e2e" and not pop.errors
    assert pop.exprs[1] is symcore.read(LINES[0], dialect="e2e")
    assert detect_dialect(lines) == "e2e"
    with pytest.raises(DialectError, match="dysymnet"):
        read_many(LINES * 5)
    with pytest.raises(DialectError, match="ambiguous"):
        detect_dialect(LINES)
