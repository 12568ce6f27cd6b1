"""The tier-1 driver's loss path (rows outer, candidates inner): sums over several chunks equal
NumPy's, out_loss is overwritten (never accumulated), and a candidate that turns non-finite in
a late chunk is +inf without disturbing the candidates evaluated next to it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import examples

from symcore import call, const, var
from symcore.codegen.eval import emit, tier1

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _loss(prog, X, y, w, c0=0, c1=None, fill=np.nan):
    n = X.shape[0]
    ldx = -(-n // prog.lanes) * prog.lanes
    Xp = np.ones((X.shape[1], max(ldx, prog.lanes)))
    Xp[:, :n] = X.T
    yp = np.zeros(Xp.shape[1])
    yp[:n] = y
    wp = np.zeros(Xp.shape[1])
    wp[:n] = w
    out = np.full((prog.n_candidates, 2), fill)
    prog.loss_range(Xp, n, yp, wp, None, out, c0, c1)
    return out


@given(n=st.integers(1, 3 * emit.CHUNK + 5), seed=st.integers(0, 2**16))
@settings(max_examples=examples(0.42), deadline=None)
def test_chunked_sums_equal_numpy(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.5, 2.0, (n, 2))
    y = rng.normal(size=n)
    w = rng.uniform(0.0, 2.0, n)
    exprs = [call("mul", var(0), var(1)), call("log", var(1)), call("add", var(0), const(0.5))]
    # log(x0 - 1.7) is NaN on some rows only: which chunk it dies in varies with the data
    exprs.append(call("log", call("sub", var(0), const(1.7))))
    prog = tier1.Tier1Program(exprs, "float64")
    got = _loss(prog, X, y, w)
    for c, f in enumerate((X[:, 0] * X[:, 1], np.log(X[:, 1]), X[:, 0] + 0.5,
                           np.log(X[:, 0] - 1.7))):
        with np.errstate(all="ignore"):
            err = f - y
        if not np.isfinite(err).all():
            assert got[c, 0] == np.inf and got[c, 1] == np.inf
            continue
        np.testing.assert_allclose(got[c], [np.sum(w * err**2), np.sum(w * np.abs(err))],
                                   rtol=1e-12)


def test_range_is_overwritten_and_alone():
    n = 2 * emit.CHUNK + 3
    rng = np.random.default_rng(1)
    X = rng.uniform(0.5, 2.0, (n, 1))
    X[n - 2, 0] = 0.0                          # 1/x0 is inf in the last chunk only
    y = np.zeros(n)
    w = np.ones(n)
    exprs = [var(0), call("div", const(1.0), var(0)), call("mul", var(0), var(0))]
    prog = tier1.Tier1Program(exprs, "float64")
    for fill in (np.nan, np.inf, 5.0):
        got = _loss(prog, X, y, w, fill=fill)
        np.testing.assert_allclose(got[0], [np.sum(X[:, 0] ** 2), np.sum(X[:, 0])], rtol=1e-12)
        assert (got[1] == np.inf).all()
        np.testing.assert_allclose(got[2], [np.sum(X[:, 0] ** 4), np.sum(X[:, 0] ** 2)],
                                   rtol=1e-12)
    part = _loss(prog, X, y, w, 1, 3, fill=-1.0)
    assert (part[0] == -1.0).all()             # outside [c0, c1): untouched
    assert (part[1] == np.inf).all()
    np.testing.assert_allclose(part[2], [np.sum(X[:, 0] ** 4), np.sum(X[:, 0] ** 2)], rtol=1e-12)
