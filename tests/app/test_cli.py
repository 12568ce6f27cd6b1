"""The `symcore` command at process level: the main job on the bundled example, simplify, dedupe,
export, and every kind of bad input (clear message, non-zero exit, never a traceback)."""

from __future__ import annotations

import ctypes
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symcore
from symcore.app.example import bundled_paths

ROOT = Path(__file__).resolve().parents[2]


def sym(*args: str, cwd: Path | None = None, env: dict | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "symcore.app.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=e, timeout=timeout)


def no_traceback(p: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict[str, Path]:
    """A 60-row CSV (y = 2*a*sin(b) + 1) and a small population with duplicates, equivalent
    rewrites, the right answer with a perturbed constant, and two unreadable lines."""
    d = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(1)
    a, b = rng.uniform(1, 3, 60), rng.uniform(-2, 2, 60)
    y = 2 * a * np.sin(b) + 1
    data = d / "data.csv"
    data.write_text("a,b,y\n" + "".join(f"{float(u)!r},{float(v)!r},{float(w)!r}\n"
                                          for u, v, w in zip(a, b, y)))
    pop = d / "pop.txt"
    pop.write_text("\n".join([
        "x0 + x1",                       # 1
        "2.0 * x0 * sin(x1) + 1.0",      # 2  the truth
        "x1 + x0",                       # 3  = line 1
        "sin(x0 +",                      # 4  unreadable
        "2.1 * x0 * sin(x1) + 0.9",      # 5  truth, constants off
        "x0 * sin(x1) * 2.0 + 1.0",      # 6  = line 2 rewritten
        "foo(x0)",                       # 7  unreadable
        "x0 + x1",                       # 8  duplicate of line 1
        "exp(x0)",                       # 9
    ]) + "\n")
    good = d / "good.txt"
    good.write_text("x0 + x1\n2.0 * x0 * sin(x1) + 1.0\nx1 + x0\n2.1 * x0 * sin(x1) + 0.9\n")
    return {"data": data, "pop": pop, "good": good, "dir": d}


# ---------------------------------------------------------------------------------------------
# The main job on the bundled example

def test_run_example_fit_json_export_pareto(tmp_path):
    so, png = tmp_path / "best.so", tmp_path / "front.png"
    p = sym("run", "--example", "--fit", "--json", "--top", "0", "--export", str(so),
            "--pareto", str(png))
    no_traceback(p)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""  # no progress bar when stderr is not a terminal
    doc = json.loads(p.stdout)
    s = doc["summary"]
    assert s["inputs"] == s["lines"] == 3000 and s["unreadable"] == 0 and s["fitted"]
    assert 1 < s["models"] <= s["classes"] < s["inputs"]
    models = doc["models"]
    assert sum(m["inputs"] for m in models) == 3000  # every input is accounted for once
    assert [m["rank"] for m in models] == list(range(1, len(models) + 1))
    best = models[0]
    assert best["score"] > 1 - 1e-9 and best["fit_status"] is not None
    scores = [m["score"] for m in models if isinstance(m["score"], float)]
    assert scores == sorted(scores, reverse=True)
    # the exported library is the best model, and the header documents the variable order
    header = so.with_suffix(".h").read_text()
    assert "x[0] = x0 (sigma)" in header and "x[1] = x1 (theta)" in header
    _, data_csv = bundled_paths()
    A = np.loadtxt(data_csv, delimiter=",", skiprows=1)
    X = np.ascontiguousarray(A[:, :2])
    dll = ctypes.CDLL(str(so))
    dll.model_batch.restype = None
    dp = ctypes.POINTER(ctypes.c_double)
    dll.model_batch.argtypes = [dp, ctypes.c_size_t, ctypes.c_size_t, dp]
    out = np.empty(len(X))
    dll.model_batch(X.ctypes.data_as(dp), len(X), 2, out.ctypes.data_as(dp))
    want = symcore.evaluate(symcore.read(best["expr"], dialect="symcore"), X)
    np.testing.assert_allclose(out, want, rtol=1e-12)
    np.testing.assert_allclose(out, A[:, 2], rtol=1e-9)  # and it is the AI Feynman formula
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(m["pareto"] for m in models) and models[0]["pareto"]


# ---------------------------------------------------------------------------------------------
# Small populations: ranking, unreadable lines, fitting

def test_run_reports_unreadable_lines_and_goes_on(small):
    p = sym("run", str(small["pop"]), "--data", str(small["data"]), "--target", "y", "--json")
    no_traceback(p)
    assert p.returncode == 3
    assert "line 4:" in p.stderr and "line 7:" in p.stderr and "2 line(s)" in p.stderr
    doc = json.loads(p.stdout)
    assert [e["line"] for e in doc["errors"]] == [4, 7]
    assert doc["summary"]["inputs"] == 7 and doc["summary"]["unreadable"] == 2
    best = doc["models"][0]
    assert best["score"] > 1 - 1e-12 and sorted(best["lines"]) == [2, 6]
    sums = {m["display"]: m["lines"] for m in doc["models"]}
    assert any(sorted(v) == [1, 3, 8] for v in sums.values())  # x0+x1, x1+x0 and its duplicate
    assert any("sin(b)" in k for k in sums)  # column names in the display form


def test_run_fit_merges_models_that_differ_in_constants(small):
    p = sym("run", str(small["good"]), "--data", str(small["data"]), "--fit", "--metric", "mse",
            "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    best = doc["models"][0]
    assert sorted(best["lines"]) == [2, 4] and best["score"] < 1e-20
    assert doc["summary"]["classes"] == 3 and doc["summary"]["models"] == 2


def test_run_reads_a_tools_csv(small, tmp_path):
    hof = tmp_path / "hall_of_fame.csv"
    hof.write_text('Complexity,Loss,Equation\n3,1.2,"x0 + x1"\n'
                   '8,0.0,"((2.0 * x0) * sin(x1)) + 1.0"\n3,1.2,"x1 + x0"\n')
    p = sym("run", str(hof), "--data", str(small["data"]), "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["summary"]["dialect"] == "pysr" and doc["summary"]["classes"] == 2
    assert doc["models"][0]["lines"] == [3] and doc["models"][1]["lines"] == [2, 4]


def test_run_on_a_real_gplearn_population(tmp_path):
    # the harvested final population of a real gplearn run (tests/fixtures/README.md)
    pop = ROOT / "tests" / "fixtures" / "gplearn_population.txt"
    rng = np.random.default_rng(4)
    X = rng.uniform(-3, 3, (120, 3))
    y = X[:, 0] * np.sin(X[:, 1]) + X[:, 2] ** 2
    data = tmp_path / "d.csv"
    data.write_text("a,b,c,y\n" + "".join(",".join(repr(float(v)) for v in (*r, t)) + "\n"
                                          for r, t in zip(X, y)))
    p = sym("run", str(pop), "--data", str(data), "--json", "--top", "0", "--metric", "mae")
    no_traceback(p)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    lines = pop.read_text().splitlines()
    assert doc["summary"]["dialect"] == "gplearn" and doc["summary"]["inputs"] == len(lines)
    assert doc["summary"]["classes"] <= len(set(lines))
    assert sum(m["inputs"] for m in doc["models"]) == len(lines)
    for m in doc["models"][:5]:  # protected gplearn semantics all the way to the score
        e = symcore.read(m["expr"], dialect="symcore")
        want = np.mean(np.abs(symcore.evaluate(e, X) - y))
        assert m["score"] == pytest.approx(want, rel=1e-9)
        members = {lines[i - 1] for i in m["lines"]}
        for text in members:  # every member is the same function as its representative
            np.testing.assert_allclose(symcore.evaluate(symcore.read(text, dialect="gplearn"),
                                                        X), symcore.evaluate(e, X), rtol=1e-9)


def test_run_text_table_defaults_to_last_column(small):
    p = sym("run", str(small["good"]), "--data", str(small["data"]))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert any(ln.startswith("   1*") and "sin(b)" in ln for ln in lines)
    assert "target y" in p.stdout


# ---------------------------------------------------------------------------------------------
# Bad input: a clear message, a non-zero exit status, no traceback

def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", ["missing_pop", "missing_data", "no_target", "non_numeric",
                                  "nan_x", "nan_y", "ragged", "empty_csv", "too_few_columns",
                                  "all_unreadable", "no_population", "unwritable_export",
                                  "export_dir_missing", "bad_metric", "both_example_and_file",
                                  "population_is_dir"])
def test_bad_input(small, tmp_path, capsys, case):
    """Every kind of bad input through the CLI's entry point (in-process for speed; the same
    cases run as real processes in test_bad_input_processes)."""
    pop, data = str(small["good"]), str(small["data"])
    args, expect = {
        "missing_pop": (["run", str(tmp_path / "nope.txt"), "--data", data], "not found"),
        "missing_data": (["run", pop, "--data", str(tmp_path / "nope.csv")], "not found"),
        "no_target": (["run", pop, "--data", data, "--target", "z"], "no target column 'z'"),
        "non_numeric": (["run", pop, "--data", str(_csv(tmp_path / "n1.csv", "a,b,y\n1,2,3\n"
                                                                            "1,abc,2\n"))],
                        "line 3, column 'b': not a number"),
        "nan_x": (["run", pop, "--data", str(_csv(tmp_path / "n2.csv", "a,b,y\n1,2,3\nnan,1,2\n"))],
                  "line 3, column 'a': nan in X"),
        "nan_y": (["run", pop, "--data", str(_csv(tmp_path / "n3.csv", "a,b,y\n1,2,3\n1,1,NaN\n"))],
                  "line 3, column 'y': nan in y"),
        "ragged": (["run", pop, "--data", str(_csv(tmp_path / "n4.csv", "a,b,y\n1,2,3\n1,2\n"))],
                   "line 3: 2 field(s)"),
        "empty_csv": (["run", pop, "--data", str(_csv(tmp_path / "n5.csv", ""))], "empty file"),
        "too_few_columns": (["run", pop, "--data", str(_csv(tmp_path / "n6.csv", "a,y\n1,2\n"))],
                            "uses variable x1"),
        "all_unreadable": (["run", str(_csv(tmp_path / "p.txt", "sin(\n)(\n")), "--data", data],
                           "cannot detect the dialect"),
        "no_population": (["run", "--data", data], "give a POPULATION file"),
        "unwritable_export": (["run", pop, "--data", data, "--export", "/proc/symcore-test.so"],
                              "cannot write export path"),
        "export_dir_missing": (["run", pop, "--data", data, "--export",
                                str(tmp_path / "no" / "m.so")], "does not exist"),
        "bad_metric": (["run", pop, "--data", data, "--metric", "accuracy"], "invalid choice"),
        "both_example_and_file": (["run", pop, "--example"], "not both"),
        "population_is_dir": (["run", str(tmp_path), "--data", data], "directory"),
    }[case]
    from symcore.app.cli import main
    try:
        rc = main(args)
    except SystemExit as exc:  # argparse rejects the command line itself
        rc = exc.code
    out, err = capsys.readouterr()
    assert rc not in (0, 3), (case, rc, out)
    assert expect in err, (case, err)
    assert out == "" and "Traceback" not in err


def test_bad_input_processes(small, tmp_path):
    data = str(small["data"])
    nan = tmp_path / "nan.csv"
    nan.write_text("a,b,y\n1,2,3\n1,inf,2\n")
    for args, expect in (
            (["run", str(tmp_path / "nope.txt"), "--data", data], "population file not found"),
            (["run", str(small["good"]), "--data", str(tmp_path / "no.csv")], "not found"),
            (["run", str(small["good"]), "--data", data, "--target", "q"], "no target column"),
            (["run", str(small["good"]), "--data", str(nan)], "line 3, column 'b': inf in X"),
            (["run", str(small["good"]), "--data", data, "--export", "/proc/x.so"],
             "cannot write export path")):
        p = sym(*args)
        no_traceback(p)
        assert p.returncode in (1, 2) and expect in p.stderr, (args, p.stderr)
        assert p.stdout == ""


def test_missing_compiler_is_reported_before_the_run(small, tmp_path):
    p = sym("run", str(small["good"]), "--data", str(small["data"]), "--export",
            str(tmp_path / "m.so"), env={"PATH": str(tmp_path), "CC": ""})
    no_traceback(p)
    assert p.returncode == 1 and "no C compiler" in p.stderr and p.stdout == ""


def test_progress_bar_on_a_terminal(small):
    import pty
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "symcore.app.cli", "run", str(small["good"]),
                             "--data", str(small["data"]), "--fit"],
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out = proc.stdout.read().decode()
    assert proc.wait(timeout=120) == 0
    os.close(master)
    err = b"".join(chunks).decode()
    for stage in ("read", "e-graph", "score", "fit"):
        assert f"\r{stage}" in err, err
    assert "Traceback" not in err and "rank" in out and "\r" not in out


def test_pareto_without_matplotlib_is_a_clear_message(small, tmp_path):
    shim = tmp_path / "shim" / "matplotlib"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('matplotlib is not installed')\n")
    p = sym("run", str(small["good"]), "--data", str(small["data"]), "--pareto",
            str(tmp_path / "p.png"), env={"PYTHONPATH": str(tmp_path / "shim")})
    no_traceback(p)
    assert p.returncode == 2 and "pip install 'symcore[plot]'" in p.stderr
    assert not (tmp_path / "p.png").exists()


def test_no_command_prints_usage():
    p = sym()
    assert p.returncode == 2 and "usage: symcore" in p.stderr


# ---------------------------------------------------------------------------------------------
# simplify, dedupe, export

def test_simplify(capsys):
    p = sym("simplify", "(X1 * 1.0) + 0.0", "--dialect", "operon", "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["simplified"] == "x0" and doc["size_before"] == 5 and doc["size_after"] == 1
    from symcore.app.cli import main
    assert main(["simplify", "x0 * 1.0 + 0.0"]) == 0
    assert capsys.readouterr().out.strip() == "x0"
    assert main(["simplify", "x0 + x0", "--to", "operon"]) == 0
    assert "X1" in capsys.readouterr().out
    for args, rc, msg in ((["sin(x0"], 1, "no dialect reads"), ([""], 2, "empty expression"),
                          (["x0", "--rules", "nonsense"], 1, "nonsense"),
                          (["x0", "--rules", ","], 2, "at least one rule set")):
        assert main(["simplify", *args]) == rc
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, (args, err)


def test_dedupe(small):
    p = sym("dedupe", str(small["pop"]), "--json")
    no_traceback(p)
    assert p.returncode == 3 and "line 4:" in p.stderr
    doc = json.loads(p.stdout)
    assert doc["inputs"] == 7
    cls = doc["class_of_line"]
    assert cls["1"] == cls["3"] == cls["8"] and cls["2"] == cls["6"] and cls["2"] != cls["5"]
    assert doc["representatives"][0]["members"] == 3
    p = sym("dedupe", str(small["good"]))
    assert p.returncode == 0 and "4 expression(s)" in p.stdout and "3 class(es)" in p.stdout
    p = sym("dedupe", str(small["dir"] / "missing.txt"))
    no_traceback(p)
    assert p.returncode == 2 and "not found" in p.stderr


def test_export_command(tmp_path):
    c = tmp_path / "m.c"
    p = sym("export", "2.5 * sin(x0) + pdiv(x1, x0)", "-o", str(c), "--name", "f")
    assert p.returncode == 0 and "wrote" in p.stdout, p.stderr
    so = tmp_path / "m.so"
    p = sym("export", "p0 * exp(x0) + p1", "-o", str(so), "--params", "1.5,-2")
    assert p.returncode == 0 and str(so.with_suffix(".h")) in p.stdout, p.stderr
    dll = ctypes.CDLL(str(so))
    dll.model.restype = ctypes.c_double
    dll.model.argtypes = [ctypes.POINTER(ctypes.c_double)]
    x = np.array([0.7])
    assert dll.model(x.ctypes.data_as(ctypes.POINTER(ctypes.c_double))) == pytest.approx(
        1.5 * np.exp(0.7) - 2, rel=1e-14)
    for args, msg in ((["p0 * x0", "-o", str(so)], "--params"),
                      (["x0", "-o", str(tmp_path / "m.xyz")], "cannot infer the export format"),
                      (["x0", "-o", "/proc/x.c"], "cannot write"),
                      (["x0", "-o", str(c), "--params", "a,b"], "comma-separated numbers"),
                      (["x0", "-o", str(c), "--name", "not valid"], "C identifier")):
        p = sym("export", *args)
        no_traceback(p)
        assert p.returncode != 0 and msg in p.stderr, (args, p.stderr)


# ---------------------------------------------------------------------------------------------
# In-process pieces of the CLI

def test_progress_bar_only_on_a_terminal():
    from symcore.app.cli import _Bar

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    quiet = io.StringIO()
    bar = _Bar(quiet)
    bar("score", 1, 2)
    bar.close()
    assert quiet.getvalue() == ""
    tty = Tty()
    bar = _Bar(tty)
    bar("fit", 32, 64)
    assert "fit" in tty.getvalue() and "32/64" in tty.getvalue() and "#" * 12 in tty.getvalue()
    bar.close()
    assert tty.getvalue().endswith("\r")


def test_console_script_is_declared():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'symcore = "symcore.app.cli:main"' in text
