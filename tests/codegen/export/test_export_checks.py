"""Export refuses what it cannot write safely, with a typed ExportError naming the cause: a path
whose library and header collide, names that clash with C/C++/Python keywords, libc/libm
functions or reserved identifiers, NUL bytes and over-long paths."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

import symcore
from symcore import ExportError, call, const, var
from symcore.ops import OPS
from symcore.codegen.export import api as ex
from symcore.codegen.export.names import check_name

E = call("add", call("sin", var(0)), call("mul", var(1), const(2.5)))


# ---------------------------------------------------------------------------------------------
# Path and format pairing

def test_so_with_a_header_path_is_refused_and_writes_nothing(tmp_path):
    for path in (tmp_path / "m.h", tmp_path / "M.H"):
        with pytest.raises(ExportError, match=r"header .*overwritten"):
            symcore.export(E, path, format="so")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".c", ".py", ".json", ".ll", ".tex"])
def test_so_with_another_formats_suffix_is_refused(tmp_path, suffix):
    with pytest.raises(ExportError, match="format 'so'|format is 'so'"):
        symcore.export(E, tmp_path / f"m{suffix}", format="so")
    assert list(tmp_path.iterdir()) == []


def test_so_writes_library_and_header_pair(tmp_path):
    lib = symcore.export(E, tmp_path / "pair.so", name="pair")
    assert lib == tmp_path / "pair.so" and ex.header_path(lib) == tmp_path / "pair.h"
    assert lib.read_bytes()[:4] == b"\x7fELF"
    assert "double pair(const double *x);" in (tmp_path / "pair.h").read_text()


def test_so_header_path_that_is_a_directory_is_refused_before_linking(tmp_path):
    (tmp_path / "m.h").mkdir()
    with pytest.raises(ExportError, match="is a directory"):
        symcore.export(E, tmp_path / "m.so")
    assert not (tmp_path / "m.so").exists()


@pytest.mark.parametrize("fmt", ["c", "so", "py", "json"])
def test_nul_bytes_and_long_paths_are_typed_errors(tmp_path, fmt):
    suffix = {"c": ".c", "so": ".so", "py": ".py", "json": ".json"}[fmt]
    cases = {
        "NUL": str(tmp_path / f"a\0b{suffix}"),
        "file name too long": str(tmp_path / ("n" * 300 + suffix)),
        "path too long": str(tmp_path / "/".join(["d" * 200] * 25) / f"m{suffix}"),
    }
    for why, path in cases.items():
        with pytest.raises(ExportError, match=why):
            symcore.export(E, path, format=fmt)
    with pytest.raises(ExportError, match="str or os.PathLike"):
        symcore.export(E, 42, format=fmt)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Names

C_AND_CPP = ["double", "restrict", "inline", "_Bool", "class", "namespace", "template", "new",
             "delete", "this", "operator", "nullptr", "typename"]
LIBC_LIBM = ["printf", "malloc", "free", "exit", "memcpy", "write", "main", "sin", "exp", "cbrt",
             "erf", "hypot", "lgamma", "fmaf", "y0"]
RESERVED = ["_start", "_Model", "__x", "a__b", "_m", "t3", "x", "params", "out", "n_rows"]


@pytest.mark.parametrize("name", C_AND_CPP + LIBC_LIBM + RESERVED)
@pytest.mark.parametrize("fmt", ["c", "so", "ll", "py"])
def test_names_clashing_in_c_are_refused_in_every_format(tmp_path, name, fmt):
    with pytest.raises(ExportError) as info:
        symcore.export(E, tmp_path / "m.out", format=fmt, name=name)
    msg = str(info.value)
    assert repr(name) in msg
    assert re.search(r"keyword|function|reserved|uses itself|symbol", msg), msg


@pytest.mark.parametrize("name", ["lambda", "yield", "None", "len", "list", "print",
                                  "ValueError", "np", "N_VARS"])
def test_python_keywords_and_builtins_are_refused_for_python_output_only(tmp_path, name):
    for fmt in ("py", "sympy"):
        with pytest.raises(ExportError, match=rf"'{name}' is a (Python|name the exported Py)"):
            symcore.export(E, tmp_path / "m.py", format=fmt, name=name)
    # the same name is a fine C function name
    src = symcore.export(E, tmp_path / f"{name}.c", name=name)
    assert f"double {name}(const double *x)" in src.read_text()


def test_every_function_an_op_lowers_to_is_refused(tmp_path):
    """The libm functions of every op's C template and LLVM lowering cannot name the model: the
    exported symbol would replace the function the model calls."""
    called: set[str] = set()
    for name, op in OPS.items():
        called |= set(re.findall(r"[A-Za-z_]\w*(?=\()", op.c))
        args = [var(0), const(3.0)] if name == "powi" else [var(j) for j in range(op.arity)]
        text = ex.llvm_ir(call(name, *args), name="m")
        called |= {f for f in re.findall(r"^declare .*?@\"?([A-Za-z_][\w.]*)\"?\(", text, re.M)
                   if not f.startswith("llvm.")}
    assert {"exp", "log", "sin", "cbrt"} <= called
    for fn in sorted(called):
        for fmt in ("c", "so", "ll"):
            with pytest.raises(ExportError, match=repr(fn)):
                check_name(fn, fmt)


def test_ordinary_names_pass(tmp_path):
    for name in ("model", "f", "predict_energy", "m2", "Model", "lambda_fit"):
        check_name(name, "c")
        check_name(name, "py")
    with pytest.raises(ExportError, match="identifier"):
        check_name("two words", "c")
    with pytest.raises(ExportError, match="identifier"):
        check_name("naïve", "c")


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
def test_header_compiles_as_cpp(tmp_path):
    symcore.export(E, tmp_path / "cpp_model.so", name="cpp_model")
    main = tmp_path / "use.cpp"
    main.write_text('#include "cpp_model.h"\nint main() { double x[2] = {1.0, 2.0};\n'
                    '  return cpp_model(x) > 0.0 ? 0 : 1; }\n')
    proc = subprocess.run(["c++", "-std=c++17", "-Wall", "-Werror", "-fsyntax-only",
                           "-I", str(tmp_path), str(main)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_py_name_may_not_shadow_a_module_a_registered_op_imports(tmp_path):
    special = pytest.importorskip("scipy.special")
    import sympy
    op = symcore.register_op(symcore.Op("erf_x", arity=1, np=special.erf, sympy=sympy.erf,
                                        c="erf({0})", latex=r"\operatorname{erf}({0})"))
    try:
        e = call("erf_x", var(0))
        with pytest.raises(ExportError, match="'scipy' is a module the exported Python code"):
            symcore.export(e, tmp_path / "m.py", name="scipy")
        assert "import scipy" in symcore.export(e, tmp_path / "ok.py", name="f").read_text()
    finally:
        symcore.unregister_op(op.name)
