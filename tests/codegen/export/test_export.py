"""Export round trips: the .so and the C file are built with the system compiler, loaded with
ctypes and compared with the reference evaluator; the text formats read back."""

from __future__ import annotations

import ctypes
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import examples, exprs

import symcore
from symcore import OPS, ExportError, call, const, param, var
from symcore.codegen.export import api as ex
from symcore.evaluate import evaluate

CC = ex.find_compiler()
RTOL = 1e-12
EDGE = [0.0, -0.0, 1.0, -1.0, 0.001, -0.001, 0.0005, -0.0005, 1e-300, -1e-300, 1e300, -1e300,
        math.nan, math.inf, -math.inf, 0.5, -0.5, 2.0, 3.0, -3.0]
# Ops whose IEEE result is correctly rounded in both libm and NumPy (composite expressions of
# these must agree bit for bit up to the 1e-12 tolerance); transcendental functions differ by a
# few ulp between glibc and NumPy's SIMD code, so they are checked one operator at a time.
EXACT_UNARY = ("neg", "square", "cube", "inv", "abs", "sign", "sqrt", "sqrt_abs", "pinv")
EXACT_BINARY = ("add", "sub", "mul", "div", "pdiv", "max", "min", "aq")


def _data(n_vars: int, seed: int = 0, n_random: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    edge = np.array(EDGE)
    grid = np.array(np.meshgrid(*([edge] * n_vars))).reshape(n_vars, -1).T if n_vars else \
        np.zeros((1, 0))
    rnd = rng.uniform(-5, 5, size=(n_random, n_vars))
    wide = rng.standard_normal((n_random, n_vars)) * 10.0 ** rng.integers(-3, 4, (n_random, 1))
    return np.ascontiguousarray(np.vstack([grid, rnd, wide]))


def assert_matches(got: np.ndarray, want: np.ndarray, rtol: float = RTOL,
                   label: str = "") -> None:
    """Equal within `rtol` relative error; NaN exactly where NaN; infinities exactly equal."""
    got, want = np.asarray(got, float), np.asarray(want, float)
    assert got.shape == want.shape
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    bad = np.flatnonzero(nan_g != nan_w)
    assert bad.size == 0, \
        f"{label}: NaN mismatch at rows {bad[:5]}: got {got[bad[:5]]}, want {want[bad[:5]]}"
    ok = ~nan_w
    g, w = got[ok], want[ok]
    finite = np.isfinite(g) & np.isfinite(w)
    with np.errstate(invalid="ignore", over="ignore"):
        close = np.abs(g - w) <= rtol * np.maximum(np.abs(w), np.abs(g))
    same = (g == w) | (finite & close)
    idx = np.flatnonzero(~same)
    assert idx.size == 0, \
        f"{label}: {idx.size} mismatches, e.g. got {g[idx[:5]]}, want {w[idx[:5]]}"


def test_assert_matches_is_strict():
    assert_matches(np.array([1.0, np.nan, np.inf]), np.array([1.0 + 1e-15, np.nan, np.inf]))
    for got, want in (([1.0], [1.0 + 1e-9]), ([np.inf], [1e308]), ([np.nan], [0.0]),
                      ([0.0], [np.nan]), ([-np.inf], [np.inf])):
        with pytest.raises(AssertionError):
            assert_matches(np.array(got), np.array(want))


def _load(lib: Path, name: str, runtime_params: bool = False):
    dll = ctypes.CDLL(str(lib))
    dp = ctypes.POINTER(ctypes.c_double)
    one = getattr(dll, name)
    one.restype = ctypes.c_double
    batch = getattr(dll, f"{name}_batch")
    batch.restype = None
    if runtime_params:
        one.argtypes = [dp, dp]
        batch.argtypes = [dp, ctypes.c_size_t, ctypes.c_size_t, dp, dp]
    else:
        one.argtypes = [dp]
        batch.argtypes = [dp, ctypes.c_size_t, ctypes.c_size_t, dp]
    return dll, one, batch


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


def _run_batch(batch, X: np.ndarray, params: np.ndarray | None = None) -> np.ndarray:
    X = np.ascontiguousarray(X, dtype=np.float64)
    out = np.empty(X.shape[0])
    stride = X.shape[1] if X.shape[1] else 1
    if X.shape[1] == 0:
        X = np.zeros((X.shape[0], 1))
    if params is None:
        batch(_ptr(X), X.shape[0], stride, _ptr(out))
    else:
        batch(_ptr(X), X.shape[0], stride, _ptr(params), _ptr(out))
    return out


def _compile_c(sources: list[Path], lib: Path) -> None:
    cmd = [CC, "-std=c99", "-O2", "-Wall", "-Werror", "-pedantic", "-fPIC", "-shared", "-o",
           str(lib), *map(str, sources), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _op_exprs() -> list[tuple[str, symcore.Expr]]:
    out = []
    for name, op in OPS.items():
        if name == "powi":
            for k in (-3, -1, 0, 1, 2, 5):
                out.append((f"powi_{k + 3}", call("powi", var(0), const(float(k)))))
        elif op.arity == 1:
            out.append((name, call(name, var(0))))
        else:
            out.append((name, call(name, var(0), var(1))))
    return out


def test_every_operator_is_covered():
    names = {n.split("_")[0] if n.startswith("powi") else n for n, _ in _op_exprs()}
    assert names == set(OPS)


# ---------------------------------------------------------------------------------------------
# C source

def test_c_every_operator_matches_reference(tmp_path):
    X = _data(2)
    cases = _op_exprs()
    srcs = []
    for name, e in cases:
        p = tmp_path / f"f_{name}.c"
        assert symcore.export(e, p, format="c", name=f"f_{name}") == p
        srcs.append(p)
    lib = tmp_path / "ops.so"
    _compile_c(srcs, lib)
    dll = ctypes.CDLL(str(lib))
    for name, e in cases:
        _, one, batch = _load(lib, f"f_{name}")
        want = evaluate(e, X)
        assert_matches(_run_batch(batch, X), want, label=name)
        # the one-row function agrees with the batch function
        for i in (0, 7, len(X) - 1):
            row = np.ascontiguousarray(X[i])
            assert_matches(np.array([one(_ptr(row))]), want[i:i + 1], label=name)
    del dll


@settings(max_examples=examples(0.42))
@given(e=exprs(n_vars=3, unary=EXACT_UNARY, binary=EXACT_BINARY, max_leaves=14),
       seed=st.integers(0, 2**16))
def test_c_random_expressions_match_reference(tmp_path_factory, e, seed):
    d = tmp_path_factory.mktemp("c")
    src = symcore.export(e, d / "m.c", name="m")
    _compile_c([src], d / "m.so")
    _, _, batch = _load(d / "m.so", "m")
    X = _data(3, seed, n_random=100)
    assert_matches(_run_batch(batch, X), evaluate(e, X))


def test_c_row_stride_and_empty_batch(tmp_path):
    e = call("sub", call("mul", var(0), const(2.5)), var(2))
    _compile_c([ex_path := symcore.export(e, tmp_path / "s.c", name="s")], tmp_path / "s.so")
    _, _, batch = _load(tmp_path / "s.so", "s")
    wide = np.arange(40.0).reshape(5, 8)  # 8 doubles per row, the model reads columns 0..2
    out = np.empty(5)
    batch(_ptr(wide), 5, 8, _ptr(out))
    assert_matches(out, evaluate(e, wide[:, :3]))
    out0 = np.full(1, 7.0)
    batch(_ptr(wide), 0, 8, _ptr(out0))
    assert out0[0] == 7.0  # zero rows: nothing written
    assert ex_path.read_text().count("#include") == 2  # math.h and stddef.h only


def test_c_deep_and_shared_trees_compile(tmp_path):
    # 3,000 nested nodes and a DAG whose tree size is 2**40: one temporary per distinct node
    deep = var(0)
    for i in range(3000):
        deep = call("add", call("mul", deep, const(0.999)), const(1e-3 * (i % 7)))
    shared = var(1)
    for _ in range(40):
        shared = call("sub", call("add", shared, shared), shared)
    e = call("add", deep, shared)
    src = symcore.export(e, tmp_path / "d.c", name="deep")
    assert src.stat().st_size < 400_000
    _compile_c([src], tmp_path / "d.so")
    _, _, batch = _load(tmp_path / "d.so", "deep")
    X = _data(2, 3, n_random=50)
    want = evaluate(e, X)
    assert_matches(_run_batch(batch, X), want)
    lib = symcore.export(e, tmp_path / "dd.so", name="deep2")
    assert_matches(_run_batch(_load(lib, "deep2")[2], X), want)
    py = _import_py(symcore.export(e, tmp_path / "dd.py", name="f"))
    assert_matches(py.f(X), want)
    for fmt in ("latex", "sympy", "json"):  # these print the tree: refused with a reason
        with pytest.raises(ExportError, match="too large"):
            symcore.export(e, tmp_path / "t.txt", format=fmt)


def test_c_runtime_parameters_and_baked_parameters(tmp_path):
    e = call("add", call("mul", param(0), call("exp", call("mul", param(1), var(0)))), param(2))
    p = np.array([1.5, -0.25, 0.125])
    X = _data(1, 4)
    want = evaluate(e, X, p)
    baked = symcore.export(e, tmp_path / "b.c", name="b", params=p)
    live = symcore.export(e, tmp_path / "r.c", name="r", params=p, bake_params=False)
    _compile_c([baked, live], tmp_path / "br.so")
    _, _, bb = _load(tmp_path / "br.so", "b")
    _, one, rb = _load(tmp_path / "br.so", "r", runtime_params=True)
    assert_matches(_run_batch(bb, X), want)
    assert_matches(_run_batch(rb, X, p), want)
    p2 = np.array([-2.0, 0.5, 3.0])
    assert_matches(_run_batch(rb, X, p2), evaluate(e, X, p2))
    with pytest.raises(ExportError, match="parameter"):
        symcore.export(e, tmp_path / "x.c")
    with pytest.raises(ExportError, match="3 parameter"):
        symcore.export(e, tmp_path / "x.c", params=[1.0])


# ---------------------------------------------------------------------------------------------
# Shared library (llvmlite object code + cc -shared) and LLVM IR text

def test_so_every_operator_matches_reference(tmp_path):
    X = _data(2, 1)
    for name, e in _op_exprs():
        lib = symcore.export(e, tmp_path / f"{name}.so", name=f"g_{name}")
        header = (tmp_path / f"{name}.h").read_text()
        assert f"double g_{name}(const double *x);" in header
        assert f"void g_{name}_batch(const double *X, size_t n_rows, size_t row_stride, " \
               f"double *out);" in header
        _, one, batch = _load(lib, f"g_{name}")
        want = evaluate(e, X)
        assert_matches(_run_batch(batch, X), want, label=name)
        row = np.ascontiguousarray(X[5])
        assert_matches(np.array([one(_ptr(row))]), want[5:6], label=name)


@settings(max_examples=examples(0.2))
@given(e=exprs(n_vars=3, unary=EXACT_UNARY, binary=EXACT_BINARY, max_leaves=14),
       seed=st.integers(0, 2**16))
def test_so_random_expressions_match_reference(tmp_path_factory, e, seed):
    d = tmp_path_factory.mktemp("so")
    lib = symcore.export(e, d / "m.so", name="m")
    _, _, batch = _load(lib, "m")
    X = _data(3, seed, n_random=100)
    assert_matches(_run_batch(batch, X), evaluate(e, X))


@settings(max_examples=examples(0.17))
@given(e=exprs(n_vars=2, max_leaves=10, powi=False), seed=st.integers(0, 2**16))
def test_so_and_c_agree_on_every_operator_mix(tmp_path_factory, e, seed):
    # both call the same libm, so transcendental functions agree too (the reference's NumPy
    # SIMD routines may differ from libm by an ulp, which composition can amplify)
    d = tmp_path_factory.mktemp("mix")
    lib = symcore.export(e, d / "a.so", name="a")
    _compile_c([symcore.export(e, d / "b.c", name="b")], d / "b.so")
    X = _data(2, seed, n_random=60)
    assert_matches(_run_batch(_load(lib, "a")[2], X), _run_batch(_load(d / "b.so", "b")[2], X))


def test_so_runtime_parameters_row_stride(tmp_path):
    e = call("div", call("mul", param(0), var(2, "theta")), call("add", var(0), param(1)))
    p = np.array([2.5, 0.75])
    lib = symcore.export(e, tmp_path / "p.so", name="p", params=p, bake_params=False)
    header = (tmp_path / "p.h").read_text()
    assert "const double *params" in header and "x[2] = x2 (theta)" in header
    _, one, batch = _load(lib, "p", runtime_params=True)
    wide = np.ascontiguousarray(_data(3, 5, n_random=40)[:, [0, 1, 2, 0, 1]])
    want = evaluate(e, wide[:, :3], p)
    assert_matches(_run_batch(batch, wide, p), want)
    assert_matches(np.array([one(_ptr(np.ascontiguousarray(wide[9])), _ptr(p))]), want[9:10])
    baked = symcore.export(e, tmp_path / "q.so", name="q", params=p)
    assert_matches(_run_batch(_load(baked, "q")[2], wide), want)


def test_so_for_generic_and_host_cpu_agree(tmp_path):
    e = call("add", call("mul", var(0), call("exp", var(1))), call("sqrt", var(0)))
    X = _data(2, 9, n_random=40)
    outs = []
    for cpu in ("generic", "host"):
        lib = symcore.export(e, tmp_path / f"{cpu}.so", name="m", cpu=cpu)
        assert "machine code:" in (tmp_path / f"{cpu}.h").read_text()
        outs.append(_run_batch(_load(lib, "m")[2], X))
    assert_matches(outs[0], evaluate(e, X))
    assert_matches(outs[1], outs[0])
    with pytest.raises(ExportError, match="cpu"):
        symcore.export(e, tmp_path / "x.so", cpu="pentium")


def test_ll_text_verifies_and_names_both_functions(tmp_path):
    import llvmlite.binding as llvm
    e = call("plog", call("add", call("sin", var(0)), call("powi", var(1), const(3.0))))
    text = symcore.export(e, tmp_path / "m.ll", name="mdl").read_text()
    mod = llvm.parse_assembly(text)
    mod.verify()
    names = {f.name for f in mod.functions if not f.is_declaration}
    assert names == {"mdl", "mdl_batch"}


# ---------------------------------------------------------------------------------------------
# Bad input

def test_bad_export_arguments(tmp_path):
    e = call("sin", var(0))
    with pytest.raises(ExportError, match="directory"):
        symcore.export(e, tmp_path / "missing" / "m.c")
    with pytest.raises(ExportError, match="format"):
        symcore.export(e, tmp_path / "m.xyz")
    with pytest.raises(ExportError, match="unknown export format"):
        symcore.export(e, tmp_path / "m.c", format="fortran")
    with pytest.raises(ExportError, match="identifier"):
        symcore.export(e, tmp_path / "m.c", name="1bad-name")
    for clash in ("sin", "exp", "double", "cbrt"):
        with pytest.raises(ExportError, match="keyword"):
            symcore.export(e, tmp_path / "m.c", name=clash)
    with pytest.raises(ExportError, match="Expr"):
        symcore.export("sin(x0)", tmp_path / "m.c")  # type: ignore[arg-type]
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(ExportError, match="not a directory"):
        symcore.export(e, afile / "m.c")
    with pytest.raises(ExportError, match="is a directory"):
        symcore.export(e, tmp_path, format="c")
    with pytest.raises(ExportError, match="cannot write"):
        symcore.export(e, "/proc/symcore-export-test.c")  # unwritable even for root


def test_missing_compiler_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(ExportError, match="no C compiler"):
        symcore.export(call("sin", var(0)), tmp_path / "m.so")
    assert not (tmp_path / "m.so").exists()


def _import_py(path: Path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


@settings(max_examples=examples(0.67))
@given(e=exprs(n_vars=3, n_params=2, max_leaves=14), seed=st.integers(0, 2**16))
def test_py_export_equals_reference_for_every_operator(tmp_path_factory, e, seed):
    d = tmp_path_factory.mktemp("py")
    p = np.array([0.75, -1.25])
    X = _data(3, seed, n_random=50)
    want = evaluate(e, X, p)
    mod = _import_py(symcore.export(e, d / "m_baked.py", name="f", params=p))
    assert_matches(mod.f(X), want)
    if e.n_params:
        live = _import_py(symcore.export(e, d / "m_live.py", name="f", params=p,
                                         bake_params=False))
        assert_matches(live.f(X), want)
        assert_matches(live.f(X, p[::-1].copy()), evaluate(e, X, p[::-1].copy()))


def test_py_export_every_operator(tmp_path):
    X = _data(2, 2)
    for name, e in _op_exprs():
        mod = _import_py(symcore.export(e, tmp_path / f"py_{name}.py", name="f"))
        assert_matches(mod.f(X), evaluate(e, X), label=name)


@settings(max_examples=examples(0.5))
@given(e=exprs(n_vars=3, n_params=1, max_leaves=10))
def test_json_round_trip(tmp_path_factory, e):
    d = tmp_path_factory.mktemp("js")
    path = symcore.export(e, d / "m.json", params=[2.0], bake_params=False)
    doc = json.loads(path.read_text())
    assert doc[0]["format"] == ex.JSON_FORMAT and doc[0]["n_params"] == e.n_params
    assert symcore.read(doc[0]["expr"], dialect="symcore") is e
    assert symcore.unflatten([(op, tuple(k), tuple(v) if isinstance(v, list) else v)
                              for op, k, v in doc[0]["flat"]]) is e
    from symcore.io.printers import to_json
    from symcore.io.files import read_file
    pop = read_file(path, dialect="symcore", on_error="raise")
    assert pop.exprs == [e]
    if e.n_params:  # the same item as the printers' population JSON, plus metadata
        item = json.loads(to_json([e], params=[[2.0]]))[0]
        assert doc[0]["expr"] == item["expr"] and doc[0]["params"] == item["params"] == [2.0]


def test_json_bakes_parameters_and_names_variables(tmp_path):
    e = call("add", call("mul", param(0), var(1, "theta")), const(-0.5))
    doc = json.loads(symcore.export(e, tmp_path / "m.json", params=[2.0]).read_text())[0]
    assert doc["n_params"] == 0 and doc["params"] is None  # baked
    assert doc["variables"] == {"1": "theta"} and doc["n_vars"] == 2
    assert symcore.read(doc["expr"], dialect="symcore") is call(
        "add", call("mul", const(2.0), var(1, "theta")), const(-0.5))


def test_sympy_and_latex_exports(tmp_path):
    import sympy

    from symcore.io.sympy_bridge import to_sympy
    for name, e in _op_exprs():
        src = symcore.export(e, tmp_path / f"s_{name}.py", format="sympy", name="model")
        ns: dict = {}
        exec(compile(src.read_text(), str(src), "exec"), ns)
        assert sympy.srepr(ns["model"]) == sympy.srepr(to_sympy(e)), name
        tex = symcore.export(e, tmp_path / f"l_{name}.tex", name="model").read_text()
        assert tex.strip() == symcore.to_latex(e), name


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
