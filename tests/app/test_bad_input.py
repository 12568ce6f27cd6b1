"""The bad-line policy and typed errors end to end: a line reading a column the data lacks is
skipped and counted, data too small gives a warning, an eggp CSV without its Numpy column is a
typed error, and every SymcoreError reaching the CLI is one line `symcore: error: ...`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import exprs

from symcore import DataError, ExportError, ParseError, SymcoreError, call, const, var
from symcore.app import cli
from symcore.app import run as R
from symcore.io.files import read_file

ROOT = Path(__file__).resolve().parents[2]


def _main(capsys, *args: str) -> tuple[int, str, str]:
    rc = cli.main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture()
def data(tmp_path) -> Path:
    rng = np.random.default_rng(3)
    X = rng.uniform(1, 2, (30, 2))
    y = X[:, 0] + 2 * X[:, 1]
    p = tmp_path / "d.csv"
    p.write_text("a,b,y\n" + "".join(f"{float(u)!r},{float(v)!r},{float(w)!r}\n"
                                      for (u, v), w in zip(X, y)))
    return p


# ---------------------------------------------------------------------------------------------
# Columns beyond the data: skipped and counted, like unreadable lines

def test_line_beyond_the_data_is_skipped_and_counted(tmp_path, data, capsys):
    pop = tmp_path / "p.operon"
    pop.write_text("(X1 + X2)\n(X99 * 2.0)\n(X1 + (2.0 * X2))\n(sin(X1) +\n(X3 - X1)\n")
    rc, out, err = _main(capsys, "run", str(pop), "--data", str(data), "--dialect", "operon",
                         "--json")
    assert rc == cli.EXIT_PARTIAL
    doc = json.loads(out)
    assert [e["line"] for e in doc["errors"]] == [2, 4, 5]
    assert "x98 (column 99)" in doc["errors"][0]["message"]
    assert "x2 (column 3)" in doc["errors"][2]["message"]
    assert doc["summary"]["inputs"] == 2 and doc["summary"]["lines"] == 5
    assert doc["models"][0]["score"] > 1 - 1e-12
    assert "symcore: line 2: uses variable x98" in err and "3 line(s) skipped" in err
    rc, out, err = _main(capsys, "run", str(pop), "--data", str(data), "--dialect", "operon")
    assert rc == cli.EXIT_PARTIAL and "3 unreadable/unusable line(s) skipped" in out
    # --strict: the first bad line stops the run with one error line
    rc, out, err = _main(capsys, "run", str(pop), "--data", str(data), "--dialect", "operon",
                         "--strict")
    assert rc == cli.EXIT_ERROR and out == ""
    assert err.count("\n") == 1 and err.startswith("symcore: error: line 2")


def test_run_skips_wide_expressions_given_as_ir(data):
    ds = R.load_csv(data)
    pop = [call("add", var(0), var(1)), call("mul", var(7), const(2.0)), var(1)]
    res = R.run(pop, ds.X, ds.y, features=ds.features)
    assert res.errors == [(2, "uses variable x7 (column 8) but the data has 2 feature "
                               "column(s): a, b")]
    assert res.n_inputs == 2 and res.n_lines == 3
    with pytest.raises(DataError, match="line 2: uses variable x7"):
        R.run(pop, ds.X, ds.y, bad_lines="raise")
    with pytest.raises(DataError, match="no candidate could be used.*uses variable x7"):
        R.run([pop[1]], ds.X, ds.y)
    # "raise" reports the first bad line in file order, whichever kind it is
    lines = ["(X1 + X2)", "(X9 * 2.0)", "(X1 +"]
    with pytest.raises(DataError, match="line 2: uses variable x8"):
        R.run(lines, ds.X, ds.y, dialect="operon", bad_lines="raise")
    with pytest.raises(ParseError, match="line 1"):
        R.run(lines[::-1], ds.X, ds.y, dialect="operon", bad_lines="raise")
    with pytest.raises(ParseError, match="line 2"):
        R.run(["(X1 + X2)", "(X1 +"], ds.X, ds.y, dialect="operon", bad_lines="raise")


@given(st.lists(exprs(n_vars=6, max_leaves=8), min_size=1, max_size=12))
def test_columns_used_equals_the_variables_fold(es):
    want = [(e.variables()[-1] + 1) if e.variables() else 0 for e in es]
    assert R._columns_used(es) == want


# ---------------------------------------------------------------------------------------------
# Data too small: a warning, not an error

def test_one_row_and_too_few_rows_warn(tmp_path, capsys):
    one = tmp_path / "one.csv"
    one.write_text("a,b,y\n1.0,2.0,3.0\n")
    pop = tmp_path / "p.txt"
    pop.write_text("x0 + x1\n")
    rc, out, err = _main(capsys, "run", str(pop), "--data", str(one))
    assert rc == cli.EXIT_OK and "symcore: warning: the data has only 1 row" in err
    ds = R.load_csv(one)
    with pytest.warns(RuntimeWarning, match="only 1 row"):
        res = R.run([call("add", var(0), var(1))], ds.X, ds.y)
    assert res.warnings and "only 1 row" in res.warnings[0]
    # two rows, a model with three constants to fit
    two = tmp_path / "two.csv"
    two.write_text("a,b,y\n1.0,2.0,3.0\n2.0,1.0,4.0\n")
    pop.write_text("0.5 * x0 + 1.5 * x1 + 0.25\n")
    rc, out, err = _main(capsys, "run", str(pop), "--data", str(two), "--fit", "--json")
    assert rc == cli.EXIT_OK
    assert "more constants (up to 3) than the data has rows (2)" in err
    assert json.loads(out)["summary"]["warnings"] == [
        ln[len("symcore: warning: "):] for ln in err.splitlines()
        if ln.startswith("symcore: warning: ")]
    # enough rows: no warning at all
    ds = R.load_csv(two)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert R.run([call("add", var(0), var(1))], ds.X, ds.y).warnings == []


def test_constant_target_warns_for_r2(tmp_path):
    X = np.arange(8.0).reshape(4, 2)
    with pytest.warns(RuntimeWarning, match="target is constant"):
        R.run([var(0)], X, np.ones(4), metric="r2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        R.run([var(0)], X, np.ones(4), metric="mse")


# ---------------------------------------------------------------------------------------------
# eggp CSV without its Numpy column

def test_eggp_csv_without_numpy_column_is_a_typed_error(tmp_path, capsys):
    p = tmp_path / "eggp.csv"
    p.write_text('Expression,theta,fitness\n"x0 * 2.0",1.0,0.5\n')
    with pytest.raises(DataError, match="'Numpy' column.*columns: Expression, theta, fitness"):
        read_file(p, dialect="eggp_numpy")
    assert len(read_file(p, dialect="eggp")) == 1  # the column it has still reads
    rc, out, err = _main(capsys, "dedupe", str(p), "--dialect", "eggp_numpy")
    assert rc == cli.EXIT_ERROR and out == ""
    assert err.count("\n") == 1 and err.startswith("symcore: error: ") and "'Numpy'" in err


# ---------------------------------------------------------------------------------------------
# One line per typed error, on every subcommand; unexpected exceptions keep their traceback

def test_typed_errors_of_every_subcommand_are_one_line(tmp_path, data, capsys):
    pop = tmp_path / "p.txt"
    pop.write_text("x0 + x1\n")
    cases = [
        (["simplify", "x0", "--dialect", "klingon"], "klingon"),
        (["simplify", "x0", "--to", "klingon"], "klingon"),
        (["dedupe", str(pop), "--dialect", "klingon"], "klingon"),
        (["export", "sin(x0)", "-o", str(tmp_path / "m.h"), "--format", "so"], "header"),
        (["export", "sin(x0)", "-o", str(tmp_path / "m.c"), "--name", "class"], "C++ keyword"),
        (["export", "sin(x0)", "-o", str(tmp_path / "m.py"), "--name", "len"], "builtin"),
        (["export", "sin(x0)", "-o", str(tmp_path / ("n" * 300 + ".c"))], "too long"),
        (["export", "sin(x0)", "-o", str(tmp_path / "a\0b.c")], "NUL"),
        (["run", str(pop), "--data", str(data), "--export", str(tmp_path / "a\0b.so")], "NUL"),
        (["run", str(pop), "--data", str(data), "--export", str(tmp_path / ("n" * 300 + ".so"))],
         "too long"),
        (["run", str(pop), "--data", str(data), "--export", str(tmp_path / "m.h"),
          "--export-format", "so"], "header"),
        (["run", str(pop), "--data", str(data), "--export", str(tmp_path / "m.c"),
          "--name", "printf"], "libc"),
    ]
    for args, msg in cases:
        rc, out, err = _main(capsys, *args)
        assert rc in (cli.EXIT_ERROR, cli.EXIT_USAGE), (args, rc, err)
        assert out == "" and err.startswith("symcore: error: ") and msg in err, (args, err)
        assert err.count("\n") == 1 and "Traceback" not in err, (args, err)
    assert not any(tmp_path.glob("m.*"))


@pytest.mark.parametrize("command", ["run", "simplify", "dedupe", "export"])
def test_multi_line_symcore_error_prints_one_line(monkeypatch, capsys, command):
    def boom(a):
        raise ExportError("first part\n  second part\n")
    monkeypatch.setattr(cli, f"_cmd_{command}", boom)
    args = {"run": ["run", "--example"], "simplify": ["simplify", "x0"],
            "dedupe": ["dedupe", "f"], "export": ["export", "x0", "-o", "m.c"]}[command]
    rc, out, err = _main(capsys, *args)
    assert rc == cli.EXIT_ERROR and err == "symcore: error: first part second part\n"

    def bug(a):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(cli, f"_cmd_{command}", bug)
    with pytest.raises(ZeroDivisionError):  # not swallowed: the traceback is the report
        cli.main(args)


def test_bad_line_policy_is_documented(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("--strict", "is skipped", "exit status is 3", "symcore: warning:"):
        assert phrase in text, phrase
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Bad input", 1)[1].split("\n#", 1)[0]
    section = " ".join(section.split())
    for phrase in ("--strict", "skipped", "exit status 3", "symcore: error:", "warning"):
        assert phrase in section, phrase
    assert issubclass(DataError, SymcoreError)
