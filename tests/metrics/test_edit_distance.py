"""symcore.metrics.tree_edit_distance: method="srsd" equals an independent transcription of the
SRSD reference on SRSD formulas and perturbations of them; timeouts; method="symcore"; errors."""

import json
import math
import os
import sys
import time

import pytest

pytest.importorskip("zss")
sys.path.insert(0, os.path.dirname(__file__))

import srsd_reference as ref  # noqa: E402
from perturb import perturbed_pairs  # noqa: E402

from symcore.metrics import (MetricsError, clear_cache, tree_edit_distance,  # noqa: E402
                             tree_edit_distances)

DATA = os.path.join(os.path.dirname(__file__), "..", "fixtures", "formulas", "srsd_feynman_120.json")


def _truths():
    with open(DATA) as f:
        rows = json.load(f)
    # a spread sample: every 15th formula (cheap enough for the suite)
    return [r["sympy"] for r in rows[::15]]


def _ref_distance(p, t, normalize=True):
    gt = ref.to_zss(ref.load_eq(t))
    try:
        est = ref.to_zss(ref.load_eq(p))
    except Exception:
        return 1 if normalize else ref.count(gt)
    return ref.distance(est, gt, normalize)


@pytest.fixture(scope="module")
def pairs():
    return perturbed_pairs(_truths(), kinds=("identity", "constant", "drop", "swap"), seed=1)


def test_srsd_equals_reference(pairs):
    clear_cache()
    got = tree_edit_distances([(p, t) for _, p, t in pairs], method="srsd", timeout=120)
    for (kind, p, t), r in zip(pairs, got):
        assert r.status == "ok", (p, r)
        assert r.distance == _ref_distance(p, t), (kind, p, t, r)
    # the perturbations are seen: not everything is 0
    assert sum(r.distance > 0 for r in got) >= len(pairs) // 2


def test_srsd_unnormalised_and_handwritten():
    cases = [("x0*x1 + 1", "x0*x1"), ("x0", "x0*x1"), ("sin(x0)", "cos(x0)"), ("3.0", "x0 + x1"),
             ("x0**2*pi", "pi*x0*x0"), ("exp(x0)*1.0", "exp(x0)")]
    for p, t in cases:
        for norm in (True, False):
            assert tree_edit_distance(p, t, normalize=norm) == _ref_distance(p, t, norm), (p, t)


def test_unreadable_prediction_scores_worst():
    r = tree_edit_distance("x0 +* )", "x0*x1", detail=True)
    assert r.status == "error" and r.distance == 1.0
    r = tree_edit_distance(None, "x0*x1", normalize=False, detail=True)
    assert r.status == "error" and r.distance == 3.0


def test_timeout_returns_flagged_worst_score():
    # SymPy evaluates this integer power exactly: it would never finish
    t0 = time.monotonic()
    r = tree_edit_distance("2**(10**12) * x0", "x0*x1", timeout=2, detail=True)
    elapsed = time.monotonic() - t0
    assert r.status == "timeout" and r.distance == 1.0
    assert elapsed < 2 + 30          # returned: the hung SymPy call was killed
    # the next call works (the killed worker was replaced)
    assert tree_edit_distance("x0*x1", "x0*x1", timeout=30) == 0.0


def test_timed_out_truth_is_nan_not_a_score():
    r = tree_edit_distances([("x0", "2**(10**12) * x0")], timeout=2)[0]
    assert r.status == "true_timeout" and math.isnan(r.distance)


def test_symcore_method(pairs):
    rs = tree_edit_distances([(p, t) for _, p, t in pairs], method="symcore")
    assert all(r.status == "ok" for r in rs)
    for (kind, p, t), r in zip(pairs, rs):
        if kind == "identity":
            assert r.distance == 0.0
        assert 0.0 <= r.distance <= 1.0
    # a pure relabelling of the same shape
    assert tree_edit_distance("sin(x0)+x1", "cos(x0)+x1", method="symcore") == 0.25


def test_inputs():
    import sympy
    from symcore.io.readers import read
    x0, x1 = sympy.symbols("x0 x1")
    assert tree_edit_distance(x0 * x1, "x0*x1") == 0.0
    assert tree_edit_distance(read("x0*x1", "sympy"), "x0*x1", method="symcore") == 0.0
    with pytest.raises(MetricsError, match="unknown method"):
        tree_edit_distance("x0", "x0", method="bogus")
    with pytest.raises(MetricsError, match="timeout"):
        tree_edit_distance("x0", "x0", timeout=0)
    with pytest.raises(MetricsError, match="expression must be"):
        tree_edit_distance(3, "x0")
