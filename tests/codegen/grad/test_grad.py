"""Parameter Jacobians: the NumPy reference equals finite differences and SymPy's derivatives for
every operator; the compiled kernels (tier 1) and the Jacobian interpreter (tier 0) equal it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
from strategies import PLAIN_BINARY, PLAIN_UNARY, examples, exprs

from symcore import DataError, OPS, call, const, evaluate, param, var
from symcore.codegen.grad.data import prepare_data
from symcore.codegen.grad.reference import jacobian_reference
from symcore.codegen.grad.templates import deriv_template
from symcore.codegen.grad.tier0 import T0_UNROLLED_PARAMS, Tier0Grad
from symcore.codegen.grad.tier1 import GradKernels, compile_loss_kernels, jacobian
from symcore.params import lift_constants

x0, x1 = var(0), var(1)
p = [param(i) for i in range(4)]
RNG = np.random.default_rng(7)
# arguments stay in [0.2, 0.7]: inside every operator's domain and away from the protected
# variants' 0.001 switch and from the kinks of abs/sign/max/min
X_SAFE = RNG.uniform(0.3, 0.8, (37, 2))
P_SAFE = np.array([0.7, 0.05, 0.6, 0.1])


def op_expr(name: str):
    a = p[0] * x0 + p[1]
    if OPS[name].arity == 1:
        return call(name, a)
    if name == "powi":
        return call("powi", a, const(3.0))
    b = p[2] * x1 + p[3] + (0.3 if name in ("max", "min") else 0.0)  # no ties for max/min
    return call(name, a, b)


def fd_jacobian(e, X, params, h=1e-6):
    params = np.asarray(params, dtype=float)[:e.n_params]
    cols = []
    for j in range(len(params)):
        d = np.zeros(len(params))
        d[j] = h * max(1.0, abs(params[j]))
        cols.append((evaluate(e, X, params + d) - evaluate(e, X, params - d)) / (2 * d[j]))
    return np.column_stack(cols)


def normal_from(pred, J, y, w=None):
    w = np.ones_like(y) if w is None else w
    r = pred - y
    return (w * r) @ r, J.T @ (w * r), J.T @ (w[:, None] * J)


@pytest.mark.parametrize("name", list(OPS))
def test_every_operator_reference_equals_finite_differences(name):
    e = op_expr(name)
    pred, J = jacobian_reference(e, X_SAFE, P_SAFE)
    np.testing.assert_allclose(pred, evaluate(e, X_SAFE, P_SAFE), rtol=1e-14)
    if name == "sign":
        assert np.all(J == 0)
        return
    np.testing.assert_allclose(J, fd_jacobian(e, X_SAFE, P_SAFE), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", list(OPS))
def test_every_operator_compiled_tiers_equal_reference(name):
    e = op_expr(name)
    pred, J = jacobian_reference(e, X_SAFE, P_SAFE)
    pred1, J1 = jacobian(e, X_SAFE, P_SAFE)
    np.testing.assert_allclose(pred1, pred, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(J1, J, rtol=1e-12, atol=1e-14)
    y = RNG.normal(size=len(X_SAFE))
    f, g, H = normal_from(pred, J, y)
    k0 = Tier0Grad([e])
    f0, g0, H0 = k0.normal(0, prepare_data(X_SAFE, y, None, k0.lanes), P_SAFE)
    k1 = GradKernels([e])
    f1, g1, H1 = k1.normal(0, prepare_data(X_SAFE, y, None, k1.lanes), P_SAFE)
    for ff, gg, HH in ((f0, g0, H0), (f1, g1, H1)):
        np.testing.assert_allclose(ff, f, rtol=1e-11)
        np.testing.assert_allclose(gg, g, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(HH, H, rtol=1e-9, atol=1e-12)
    k1.close()


@pytest.mark.parametrize("name", list(OPS))
def test_every_operator_derivative_template_equals_finite_differences(name):
    # The local derivative d out / d arg_i of each op, evaluated on its own (arguments as data
    # columns, `out` as the last column), against central differences of the op's NumPy
    # reference.  Points come from two intervals (|a| < 1 for asin/atanh, a > 1 for acosh);
    # b is offset so max/min have no ties; only points where the op is finite around them count.
    op = OPS[name]
    consts = (None, 2.0) if name == "powi" else (None,) * op.arity
    rng = np.random.default_rng(11)
    cols = [np.concatenate([rng.uniform(0.3, 0.8, 40), rng.uniform(1.2, 1.8, 40)])
            + 0.23 * j for j in range(op.arity)]
    args = [np.full_like(cols[0], c) if c is not None else col for c, col in zip(consts, cols)]
    with np.errstate(all="ignore"):
        out = op.np(*args)
        h = 1e-6
        fd = []
        for i in range(op.arity):
            up = [a + h if j == i else a for j, a in enumerate(args)]
            dn = [a - h if j == i else a for j, a in enumerate(args)]
            fd.append((op.np(*up) - op.np(*dn)) / (2 * h))
    ok = np.isfinite(out) & np.all(np.isfinite(fd), axis=0)
    assert ok.sum() >= 20, f"{name}: too few points inside its domain"
    X = np.column_stack([*args, out])[ok]
    for i in range(op.arity):
        if consts[i] is not None:
            continue   # a literal operand (powi's exponent) is not differentiated
        got = evaluate(deriv_template(name, consts, i), X)
        np.testing.assert_allclose(got, fd[i][ok], rtol=1e-5, atol=1e-7,
                                   err_msg=f"d {name} / d arg{i}")


@settings(max_examples=examples(0.42))
@given(exprs(n_vars=2, n_params=3, unary=PLAIN_UNARY, binary=PLAIN_BINARY, max_leaves=8))
def test_reference_equals_sympy_derivatives(e):
    import sympy
    from symcore.io.sympy_bridge import to_sympy
    P = e.n_params
    if P == 0:
        return
    X = RNG.uniform(0.5, 1.5, (6, 2))
    params = RNG.uniform(0.5, 1.5, P)
    _, J = jacobian_reference(e, X, params)
    s = to_sympy(e)
    real = {q: sympy.Symbol(q.name, real=True) for q in s.free_symbols}
    s = s.subs(real)
    assume(not s.has(sympy.zoo, sympy.nan))   # SymPy folded a literal 1/0 or 0/0 away
    syms = sorted(s.free_symbols, key=lambda q: q.name)
    for j in range(P):
        pj = next((q for q in syms if q.name == f"p{j}"), None)
        if pj is None:
            # SymPy cancelled p_j (p0/p0 -> 1): the derivative is 0 wherever ours is finite
            ok = np.isfinite(J[:, j]) & (np.abs(J[:, j]) < 1e8)
            np.testing.assert_allclose(J[ok, j], 0.0, atol=1e-9)
            continue
        d = sympy.diff(s, pj)
        if d.has(sympy.zoo, sympy.nan):
            continue
        f = sympy.lambdify(syms, d, "numpy")
        env = {f"x{i}": X[:, i] for i in range(2)} | {f"p{i}": params[i] for i in range(P)}
        with np.errstate(all="ignore"):
            raw = np.asarray(f(*[env[q.name] for q in syms]))
        if np.iscomplexobj(raw):     # SymPy folded e.g. sqrt(-1) to I: the real answer is NaN
            raw = np.where(raw.imag == 0, raw.real, np.nan)
        want = np.broadcast_to(np.asarray(raw, dtype=float), (6,))
        ok = np.isfinite(want) & np.isfinite(J[:, j]) & (np.abs(want) < 1e8)
        np.testing.assert_allclose(J[ok, j], want[ok], rtol=1e-7, atol=1e-9)


@settings(max_examples=examples(0.67))
@given(exprs(n_vars=2, n_params=3, max_leaves=10),
       st.integers(0, 2 ** 31 - 1))
def test_tiers_agree_on_random_expressions(e, seed):
    """Every operator, NaN-producing inputs included: tier 0 == tier 1 == reference wherever
    the reference is finite, and non-finite where it is not."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (19, 2))
    params = rng.uniform(-2, 2, 3)
    y = rng.normal(size=19)
    P = e.n_params
    pred, J = jacobian_reference(e, X, params)
    with np.errstate(all="ignore"):
        f, g, H = normal_from(pred, J, y)
    k0, k1 = Tier0Grad([e]), GradKernels([e])
    got = [k.normal(0, prepare_data(X, y, None, k.lanes), params[:max(P, 1)].copy())
           for k in (k0, k1)]
    k1.close()
    for f2, g2, H2 in got:
        if not math.isfinite(f) or not (np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
            assert not (math.isfinite(f2) and np.all(np.isfinite(g2)) and np.all(np.isfinite(H2)))
            continue
        if max(abs(f), np.abs(H).max(initial=0)) > 1e100:
            continue  # near overflow: sums in another order may differ in the last bits
        np.testing.assert_allclose(f2, f, rtol=1e-8)
        np.testing.assert_allclose(g2, g, rtol=1e-6, atol=1e-8 * (1 + np.abs(g).max(initial=0)))
        np.testing.assert_allclose(H2, H, rtol=1e-6, atol=1e-8 * (1 + np.abs(H).max(initial=0)))


def test_zero_weight_rows_are_ignored_even_when_not_finite():
    e = call("log", p[0] * x0)
    X = np.array([[1.0], [2.0], [-1.0], [3.0]])   # log of a negative: NaN on row 2
    y = np.array([0.1, 0.7, 0.0, 1.1])
    w = np.array([1.0, 2.0, 0.0, 1.0])
    keep = w > 0
    pred, J = jacobian_reference(e, X[keep], [1.3])
    f, g, H = normal_from(pred, J, y[keep], w[keep])
    for k in (Tier0Grad([e]), GradKernels([e])):
        f2, g2, H2 = k.normal(0, prepare_data(X, y, w, k.lanes), np.array([1.3]))
        np.testing.assert_allclose([f2, *g2, *H2.ravel()], [f, *g, *H.ravel()], rtol=1e-12)


def test_identical_structures_share_one_function_and_unused_slots_are_zero():
    e = p[2] * x0  # slots 0 and 1 unused
    k = GradKernels([e, e, p[0] * x1], jacobian=True)
    assert len(k._normal) == 2
    d = prepare_data(np.ones((3, 2)), None, None, k.lanes)
    pred, J = k.jacobian(0, d, np.array([5.0, 6.0, 2.0]))
    np.testing.assert_array_equal(pred, [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(J, [[0, 0, 1]] * 3)
    k.close()


def test_bad_arrays_raise_typed_errors():
    e = p[0] * x1
    with pytest.raises(DataError, match="parameter"):
        jacobian(e, np.ones((3, 2)), [])
    with pytest.raises(DataError, match="column"):
        jacobian(e, np.ones((3, 1)), [1.0])
    with pytest.raises(DataError):
        jacobian_reference(e, np.ones((3, 2)), np.ones((1, 1)))
    k0, k1 = Tier0Grad([e]), GradKernels([e])
    for k in (k0, k1):
        d = prepare_data(np.ones((5, 2)), np.ones(5), None, k.lanes)
        with pytest.raises(DataError):
            k.normal(0, d, np.ones(1, dtype=np.float32))
        with pytest.raises(DataError):
            k.normal(0, d, np.ones(0))
        with pytest.raises(DataError):
            k.normal(0, prepare_data(np.ones((5, 1)), np.ones(5), None, k.lanes), np.ones(1))
    k1.close()


def test_empty_data():
    e = p[0] * x0
    pred, J = jacobian(e, np.empty((0, 1)), [1.0])
    assert pred.shape == (0,) and J.shape == (0, 1)
    k = Tier0Grad([e])
    f, g, H = k.normal(0, prepare_data(np.empty((0, 1)), np.empty(0), None, k.lanes),
                       np.array([2.0]))
    assert f == 0 and g[0] == 0 and H[0, 0] == 0


def test_lifted_feynman_like_model():
    e = call("exp", -call("powi", x0, const(2.0)) / 2.0) / call("sqrt", 2.0 * const(math.pi))
    m, v = lift_constants(e)
    X = RNG.uniform(1, 3, (50, 1))
    pred, J = jacobian(m, X, v)
    np.testing.assert_allclose(J, fd_jacobian(m, X, v), rtol=1e-6, atol=1e-9)


def test_signed_zero_literals_keep_their_sign():
    """1/-0.0 is -inf in every tier (a memoised constant must not merge -0.0 with 0.0)."""
    X = np.ones((3, 1))
    y = np.zeros(3)
    for base, want in ((2.0, 0.0), (0.0, math.inf)):
        e = call("pow_abs", const(base), call("powi", const(-0.0), const(-1.0))) + p[0] * x0
        pred, _ = jacobian_reference(e, X, [0.0])
        assert pred[0] == want
        assert jacobian(e, X, [0.0])[0][0] == want
        for k in (Tier0Grad([e]), GradKernels([e])):
            f = k.normal(0, prepare_data(X, y, None, k.lanes), np.zeros(1))[0]
            assert f == (0.0 if want == 0.0 else math.inf)
    for z in (0.0, -0.0, 0.0):   # both zeros, in either order through the caches
        e = p[0] / const(z)
        want = math.copysign(math.inf, z)
        assert jacobian_reference(e, X, [1.0])[1][0, 0] == want
        assert jacobian(e, X, [1.0])[1][0, 0] == want


def test_value_and_gradient_modes_are_prefixes_of_the_normal_equations():
    e = call("exp", p[0] * x0) * call("sin", p[1] + x1) + p[2]
    X = RNG.uniform(-1, 1, (29, 2))
    y = RNG.normal(size=29)
    params = np.array([0.3, 0.7, -0.2])
    outs = {}
    for mode in ("value", "gradient", "normal"):
        lib, (fn,), lanes = compile_loss_kernels([e], mode)
        d = prepare_data(X, y, None, lanes)
        n_acc = {"value": 1, "gradient": 4, "normal": 10}[mode]
        out = np.empty((n_acc, lanes))
        fn(*d.pointers, d.n_pad, d.n_pad, params.ctypes.data, out.ctypes.data)
        outs[mode] = out.sum(axis=1)
        lib.close()
    np.testing.assert_allclose(outs["gradient"], outs["normal"][:4], rtol=1e-13)
    np.testing.assert_allclose(outs["value"], outs["normal"][:1], rtol=1e-13)
    pred, J = jacobian_reference(e, X, params)
    f, g, H = normal_from(pred, J, y)
    np.testing.assert_allclose(outs["gradient"], [f, *g], rtol=1e-10)


# -- the tier-0 Jacobian interpreter on edge data and at block boundaries -------------------------

EDGE = [0.0, -0.0, 1.0, -1.0, 0.001, -0.001, 0.0005, 1e-300, -1e-300, 1e300, -1e300, math.nan,
        math.inf, -math.inf, 0.5, -0.5, 2.0, 3.0, -3.0, 0.7]


def _finite(*arrays) -> bool:
    return all(np.all(np.isfinite(a)) for a in arrays)


def test_tier0_every_operator_on_edge_rows():
    """Every op (powi with small, large and negative exponents; binary ops with the parameter
    on either side and as both operands) on ±0, tiny, huge, inf and NaN, one row at a time:
    tier 0's normal equations equal the reference's, and are non-finite exactly when those
    are."""
    es = []
    for name, op in OPS.items():
        if name == "powi":
            es += [call("powi", x0 * p[0], const(float(k))) for k in (-3, 0, 1, 2, 5, 17, 40)]
        elif op.arity == 1:
            es.append(call(name, x0 * p[0] + p[1]))
        else:
            es += [call(name, x0 * p[0], p[1]), call(name, p[1], x0 + p[0]),
                   call(name, p[0], p[0])]
    assert {e.op for e in es} == set(OPS)
    k0 = Tier0Grad(es)
    params = np.array([0.7, -0.3])
    y = np.array([0.25])
    checked = 0
    for v in EDGE:
        X = np.array([[v]])
        data = prepare_data(X, y, None, k0.lanes)
        for i, e in enumerate(es):
            q = params[:max(e.n_params, 1)].copy()
            with np.errstate(all="ignore"):
                pred, J = jacobian_reference(e, X, q)
                f, g, H = normal_from(pred, J, y)
            f0, g0, H0 = k0.normal(i, data, q)
            label = f"{e} at x={v}"
            if not _finite(f, g, H):
                assert not _finite(f0, g0, H0), label
                continue
            assert _finite(f0, g0, H0), label
            np.testing.assert_allclose(f0, f, rtol=1e-12, atol=1e-300, err_msg=label)
            np.testing.assert_allclose(g0, g, rtol=1e-12, atol=1e-300, err_msg=label)
            np.testing.assert_allclose(H0, H, rtol=1e-12, atol=1e-300, err_msg=label)
            checked += 1
    assert checked > len(es) * len(EDGE) // 3


def test_tier0_row_counts_at_block_boundaries_weights_and_batches():
    """Row counts around tier 0's block (padding), with and without weights, a parameter-free
    candidate, a candidate that is NaN on some rows; `normal_batch` equals `normal`."""
    x, y_, q0, q1, q2 = x0, x1, p[0], p[1], p[2]
    es = [call("exp", x * q0) * call("powi", x + q1, const(2.0)) + q0 * q0, x, q1,
          call("sin", q0 * y_) / call("pdiv", x, q1), q2 * x + q0, call("log", x * q2)]
    k0 = Tier0Grad(es)
    L = k0.lanes
    params = np.array([0.3, -0.2, 0.9])
    Pm = k0.max_params
    for n in sorted({0, 1, L - 1, L, L + 1, 2 * L + 1, 200}):
        rng = np.random.default_rng(n + 17)
        X = rng.uniform(-1, 1, size=(n, 2))
        yv = rng.normal(size=n)
        for w in (None, rng.uniform(0, 2, size=n)):
            data = prepare_data(X, yv, w, L)
            ids = np.arange(len(es))
            fb, gb, Hb = k0.normal_batch(ids, np.tile(params[:max(Pm, 1)], (len(es), 1)), data)
            for i, e in enumerate(es):
                P = e.n_params
                q = params[:max(P, 1)].copy()
                with np.errstate(all="ignore"):
                    pred, J = jacobian_reference(e, X, q)
                    f, g, H = normal_from(pred, J, yv, w)
                f0, g0, H0 = k0.normal(i, data, q)
                label = f"{e}, n={n}, weighted={w is not None}"
                if not _finite(f, g, H):
                    assert not _finite(f0, g0, H0), label
                    assert not _finite(fb[i], gb[i, :P], Hb[i, :P, :P]), label
                    continue
                for ff, gg, HH in ((f0, g0, H0), (fb[i], gb[i, :P], Hb[i, :P, :P])):
                    np.testing.assert_allclose(ff, f, rtol=1e-11, atol=1e-300, err_msg=label)
                    np.testing.assert_allclose(gg, g, rtol=1e-10, atol=1e-13, err_msg=label)
                    np.testing.assert_allclose(HH, H, rtol=1e-10, atol=1e-13, err_msg=label)
                assert np.all(gb[i, P:] == 0) and np.all(Hb[i, P:] == 0) and \
                    np.all(Hb[i, :, P:] == 0), label
        if n >= 7:
            assert not math.isfinite(f0)   # the last candidate: log of negative x*p2 on a row


@pytest.mark.parametrize("P", [1, 3, 10, 11, 13])
def test_tier0_normal_equations_unrolled_and_generic(P):
    """Tier 0 unrolls the normal equations for up to T0_UNROLLED_PARAMS parameters and loops
    beyond: both equal the reference at every P, in a batch of mixed sizes too."""
    assert T0_UNROLLED_PARAMS in (10, 11, 12)  # the cases above straddle the boundary
    ps = [param(i) for i in range(P)]
    e = ps[0] * x0
    for i, q in enumerate(ps[1:], 1):
        e = e + q * call("sin", float(i) * x1 + q)
    rng = np.random.default_rng(P)
    X = rng.uniform(-1, 1, (77, 2))
    yv = rng.normal(size=77)
    w = rng.uniform(0, 2, 77)
    q = rng.normal(size=P)
    k0 = Tier0Grad([e, p[0] * x0])
    data = prepare_data(X, yv, w, k0.lanes)
    pred, J = jacobian_reference(e, X, q)
    f, g, H = normal_from(pred, J, yv, w)
    f0, g0, H0 = k0.normal(0, data, q)
    fb, gb, Hb = k0.normal_batch(np.array([0, 1]), np.stack([q, np.r_[0.5, np.zeros(P - 1)]]),
                                 data)
    for ff, gg, HH in ((f0, g0, H0), (fb[0], gb[0], Hb[0])):
        np.testing.assert_allclose(ff, f, rtol=1e-11)
        np.testing.assert_allclose(gg, g, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(HH, H, rtol=1e-10, atol=1e-12)


def test_tier0_fit_lm_checks_its_arrays():
    """The native LM entry refuses arrays that do not describe its problems before any native
    code runs."""
    k0 = Tier0Grad([p[0] * x0, p[0] * x0 + p[1]])
    data = prepare_data(np.ones((8, 1)), np.ones(8), None, k0.lanes)
    ids = np.array([0, 1])
    good = np.ones((2, 2)), np.array([10, 10])
    params, f, it, st = k0.fit_lm(ids, *good, data, 1e-8)
    assert params.shape == (2, 2) and np.all(st == 0)
    for bad in ((np.ones((2, 3)), good[1]), (good[0], np.array([10])),
                (good[0], np.array([10, -1]))):
        with pytest.raises(DataError):
            k0.fit_lm(ids, *bad, data, 1e-8)
    with pytest.raises(DataError):
        k0.fit_lm(np.array([0, 2]), *good, data, 1e-8)
    with pytest.raises(DataError):
        k0.fit_lm(ids, *good, data, float("nan"))
    with pytest.raises(DataError):
        k0.fit_lm(ids, *good, prepare_data(np.ones((8, 2)), np.ones(8), None, 3), 1e-8)


@pytest.mark.parametrize("k", [2, 3, 5, 7, -3, -5])
def test_tier0_powi_is_the_reference_product_sequence(k):
    """powi's forward value in the tier-0 Jacobian is the reference's binary powering bit for
    bit (C pow differs by an ulp, which sin of a huge argument turns into a different loss)."""
    e = call("sin", call("powi", var(0), const(float(k))))
    X = np.array([[5009.0], [1234.5678], [-7.25], [3.3e5]] * 4)
    y = np.zeros(len(X))
    pred, J = jacobian_reference(e, X, np.zeros(1))
    f, _, _ = normal_from(pred, J, y)
    for K in (Tier0Grad, GradKernels):
        k_ = K([e])
        f2 = k_.normal(0, prepare_data(X, y, None, k_.lanes), np.zeros(1))[0]
        assert f2 == pytest.approx(f, rel=1e-12), K.__name__
