"""The `symcore` command: `run` (the main job), `simplify`, `dedupe` and `export`.

Exit status: 0 success; 1 an error (one line `symcore: error: ...` on stderr, no traceback);
2 bad command line; 3 finished, but some population lines were skipped (each reported on stderr
with its line).  The bad-line policy is BAD_LINES below (also in --help and the README).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence, TextIO

from symcore.errors import SymcoreError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
_MAX_REPORTED_ERRORS = 20

BAD_LINES = (
    "bad lines: blank lines, '#' comments and CSV rows with an empty expression cell are "
    "ignored. A line that does not read (syntax, unknown operator, wrong arity) or that uses a "
    "variable beyond the data's feature columns (e.g. X99 with 3 columns) is skipped: the rest "
    "of the population is used, each skipped line is reported on stderr as 'symcore: line N: "
    "reason' (the first 20, then a count), counted in the summary ('K skipped') and listed "
    "under \"errors\" with --json, and the exit status is 3. --strict stops at the first bad "
    "line instead (exit 1). Data too small for the question (one row; a constant target with "
    "r2/nmse; fewer rows than a model's constants when fitting) gives 'symcore: warning: ...' "
    "on stderr and does not change the exit status.")


class _UserError(Exception):
    """A problem with the command line's arguments found after parsing."""


# ---------------------------------------------------------------------------------------------
# Progress bar (stderr, only on a terminal)

class _Bar:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.on = stream.isatty()
        self.t0 = time.perf_counter()
        self.last = ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.on:
            return
        frac = done / total if total else 1.0
        n = int(round(24 * frac))
        text = (f"\r{stage:<8} [{'#' * n}{'.' * (24 - n)}] {done}/{total} "
                f"{time.perf_counter() - self.t0:6.1f} s")
        if text != self.last:
            self.stream.write(text)
            self.stream.flush()
            self.last = text

    def close(self) -> None:
        if self.on and self.last:
            self.stream.write("\r" + " " * len(self.last) + "\r")
            self.stream.flush()


def _one_line(msg: Any) -> str:
    return " ".join(part.strip() for part in str(msg).splitlines() if part.strip())


def _warn_errors(errors: Sequence[tuple[int, Any]], stream: TextIO) -> None:
    for ln, err in errors[:_MAX_REPORTED_ERRORS]:
        stream.write(f"symcore: line {ln}: {_one_line(err)}\n")
    if len(errors) > _MAX_REPORTED_ERRORS:
        stream.write(f"symcore: ... and {len(errors) - _MAX_REPORTED_ERRORS} more skipped "
                     f"line(s)\n")
    if errors:
        stream.write(f"symcore: {len(errors)} line(s) skipped (unreadable, or using a column "
                     f"the data does not have); the rest was used\n")


def _check_output_path(path: str, what: str) -> None:
    if "\0" in path:
        raise _UserError(f"{what} {path!r} contains a NUL byte")
    try:
        _probe_output_path(path, what)
    except (OSError, ValueError) as err:  # e.g. a file name longer than the file system allows
        raise _UserError(f"cannot write {what} {path[:80]!r}: "
                         f"{getattr(err, 'strerror', None) or err}") from None


def _probe_output_path(path: str, what: str) -> None:
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise _UserError(f"{what} {path!r} is a directory")
    if not parent.is_dir():
        raise _UserError(f"cannot write {what} {path!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise _UserError(f"cannot write {what} {path!r}: permission denied")
    existed = p.exists()
    try:  # a real probe: permissions alone do not tell (read-only mounts, /proc, root)
        with open(p, "ab"):
            pass
    except OSError as err:
        raise _UserError(f"cannot write {what} {path!r}: {err.strerror or err}") from None
    if not existed:
        try:
            p.unlink()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# symcore run

def _cmd_run(a: argparse.Namespace) -> int:
    from symcore.app import report
    from symcore.app import run as R
    if a.example:
        from symcore.app.example import bundled_paths, formula
        if a.population:
            raise _UserError("give either POPULATION or --example, not both")
        pop_path, data_path = bundled_paths()
        population: str = str(pop_path)
        data = a.data or str(data_path)
        target = a.target or formula()["output"]
    else:
        if not a.population:
            raise _UserError("give a POPULATION file (one candidate a line, or a tool's CSV), "
                             "or --example for the bundled example")
        if not a.data:
            raise _UserError("--data DATA.csv is required with a POPULATION file")
        population, data, target = a.population, a.data, a.target
        if not Path(population).exists():
            raise _UserError(f"population file not found: {population}")
        if Path(population).is_dir():
            raise _UserError(f"population path is a directory: {population}")
    if a.top < 0:
        raise _UserError("--top must be >= 0 (0 shows every model)")
    if a.export:
        _check_output_path(a.export, "export path")
        from symcore.codegen.export.api import check_name, check_target, find_compiler
        fmt = check_target(a.export, a.export_format)
        check_name(a.name, fmt)
        if fmt == "so":
            find_compiler()  # before the run: a missing linker is reported at once
    if a.pareto:
        _check_output_path(a.pareto, "plot")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise _UserError("--pareto needs matplotlib: pip install 'symcore[plot]'") from None
    scorer = None
    if a.dask:
        if a.fit:
            raise _UserError("--fit is not available with --dask (use symcore.dask.fit)")
        from symcore import dask as sd
        client = sd.client_from_spec(a.dask)
        scorer = sd.DaskScorer(sd.read_frame(data), target, client)
        if scorer.dashboard:
            sys.stderr.write(f"symcore: dask dashboard: {scorer.dashboard}\n")
        Xs, ys = scorer.sample()
        ds = R.Dataset(Xs, ys, scorer.features, scorer.target)
    else:
        ds = R.load_csv(data, target)
    bar = _Bar(sys.stderr)
    try:
        with warnings.catch_warnings():  # printed below, once, as `symcore: warning: ...`
            warnings.simplefilter("ignore", RuntimeWarning)
            res = R.run(population, ds.X, ds.y, features=ds.features, target=ds.target,
                        metric=a.metric, fit=a.fit, dialect=a.dialect, rules=_rules(a),
                        time_limit=a.time_limit, progress=bar,
                        bad_lines="raise" if a.strict else "skip", scorer=scorer)
    finally:
        bar.close()
        if scorer is not None:
            scorer.close()
    if a.example:
        res.source = "the bundled example (AI Feynman I.6.2)"
    if a.export:
        from symcore.codegen.export.api import export
        t0 = time.perf_counter()
        best = res.best
        named = _with_names(best.expr, ds.features)
        out = export(named, a.export, format=fmt, name=a.name)
        res.timings["export"] = time.perf_counter() - t0
        res.exported.append(str(out))
        if fmt == "so":
            from symcore.codegen.export.api import header_path
            res.exported.append(str(header_path(out)))
    if a.pareto:
        report.pareto_plot(res, a.pareto)
    _warn_errors(res.errors, sys.stderr)
    for msg in res.warnings:
        sys.stderr.write(f"symcore: warning: {_one_line(msg)}\n")
    if a.json:
        json.dump(report.result_json(res, a.top), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(report.format_report(res, a.top) + "\n")
    return EXIT_PARTIAL if res.errors else EXIT_OK


def _with_names(expr: Any, features: Sequence[str]) -> Any:
    from symcore.columns import header_names, with_names
    return with_names(expr, header_names(features))


# ---------------------------------------------------------------------------------------------
# symcore simplify / dedupe / export

def _read_one(text: str, dialect: str) -> Any:
    from symcore.io.readers import read
    if not text.strip():
        raise _UserError("empty expression")
    return read(text, dialect=dialect)


def _rules(a: argparse.Namespace) -> Any:
    parts = [r.strip() for r in a.rules.split(",") if r.strip()]
    if not parts:
        raise _UserError("--rules needs at least one rule set name")
    return parts[0] if len(parts) == 1 else parts


def _cmd_simplify(a: argparse.Namespace) -> int:
    from symcore.io.printers import write
    from symcore.rules.api import simplify
    e = _read_one(a.expr, a.dialect)
    s = simplify(e, rules=_rules(a))
    text = str(s) if a.to == "symcore" else write(s, a.to)
    if a.json:
        json.dump({"input": a.expr, "expr": str(e), "simplified": text, "size_before": e.size,
                   "size_after": s.size}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(text + "\n")
    return EXIT_OK


def _cmd_dedupe(a: argparse.Namespace) -> int:
    from symcore.io.files import read_file
    from symcore.rules.api import dedupe
    p = Path(a.file)
    if not p.exists():
        raise _UserError(f"file not found: {a.file}")
    if p.is_dir():
        raise _UserError(f"{a.file} is a directory")
    pop = read_file(p, dialect=a.dialect, on_error="raise" if a.strict else "collect")
    _warn_errors(pop.errors, sys.stderr)
    if not pop.exprs:
        raise _UserError(f"no expression in {a.file} could be read")
    t0 = time.perf_counter()
    d = dedupe(pop.exprs, rules=_rules(a), time_limit=a.time_limit)
    secs = time.perf_counter() - t0
    order = sorted(range(d.n_classes), key=lambda k: (-len(d.members[k]), d.members[k][0]))
    if a.json:
        doc = {"inputs": len(pop.exprs), "unreadable": [{"line": ln, "message": str(err)}
                                                          for ln, err in pop.errors],
               "dialect": pop.dialect, "classes": d.n_classes,
               "stop_reason": getattr(d.stop_reason, "value", str(d.stop_reason)),
               "seconds": round(secs, 6),
               "class_of_line": {str(pop.line_numbers[i]): d.class_of[i]
                                 for i in range(len(pop.exprs))},
               "representatives": [{"class": k, "expr": str(d.representatives[k]),
                                    "members": len(d.members[k]),
                                    "lines": [pop.line_numbers[i] for i in d.members[k]]}
                                   for k in order]}
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        w = sys.stdout.write
        w(f"{len(pop.exprs)} expression(s) ({pop.dialect}) -> {d.n_classes} class(es) in "
          f"{secs:.2f} s (stopped: {getattr(d.stop_reason, 'value', d.stop_reason)})\n")
        for k in order:
            ls = [pop.line_numbers[i] for i in d.members[k]]
            shown = ", ".join(map(str, ls[:8])) + (", ..." if len(ls) > 8 else "")
            w(f"class {k}: {len(ls)} member(s) (line {shown}): {d.representatives[k]}\n")
    return EXIT_PARTIAL if pop.errors else EXIT_OK


def _parse_params(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        vals = [float(t) for t in text.replace(";", ",").split(",") if t.strip()]
    except ValueError:
        raise _UserError(f"--params must be comma-separated numbers, got {text!r}") from None
    if not all(math.isfinite(v) for v in vals):
        raise _UserError("--params must be finite numbers")
    return vals


def _cmd_export(a: argparse.Namespace) -> int:
    from symcore.codegen.export.api import export
    e = _read_one(a.expr, a.dialect)
    pv = _parse_params(a.params)
    if e.n_params and not a.runtime_params and (pv is None or len(pv) < e.n_params):
        raise _UserError(f"the expression has {e.n_params} parameter(s): give their values with "
                         f"--params V0,V1,... or keep them as inputs with --runtime-params")
    out = export(e, a.output, format=a.format, name=a.name,
                         params=pv, bake_params=not a.runtime_params, cpu=a.cpu)
    sys.stdout.write(f"wrote {out}\n")
    if (a.format or "").lower() == "so" or (a.format is None and out.suffix in (".so", ".dylib")):
        from symcore.codegen.export.api import header_path
        sys.stdout.write(f"wrote {header_path(out)}\n")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# Parser and entry point

def _cmd_metrics(args: argparse.Namespace) -> int:
    """SRSD edit distance and SRBench symbolic solution of a results table (symcore.metrics)."""
    try:
        from symcore.metrics.table import format_table, judge_table, load_results, load_truth
    except ImportError as err:  # the optional extra is missing
        raise _UserError(f"symcore metrics needs the metrics extra "
                         f"(pip install 'symcore[metrics]'): {err}") from None
    out = judge_table(load_results(args.results, args.key, args.pred), load_truth(args.truth),
                      method=args.method, timeout=args.timeout, digits=args.digits,
                      workers=args.workers)
    if args.json:
        print(json.dumps(out, indent=1, default=str).replace("NaN", "null"))
    else:
        print(format_table(out))
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version
    try:
        __version__ = version("symcore")
    except PackageNotFoundError:  # run from a source tree that is not installed
        __version__ = "(not installed)"
    from symcore.app.run import METRICS
    p = argparse.ArgumentParser(prog="symcore", description=(
        "symcore: read, deduplicate, simplify, score, fit and export symbolic-regression "
        "candidates."), epilog="exit status: 0 ok, 1 error, 2 usage, 3 some lines skipped. "
        + BAD_LINES)
    p.add_argument("--version", action="version", version=f"symcore {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="the main job: dedupe, simplify, score, rank (and fit, export)",
                       description="Read a population, deduplicate and simplify it in one "
                       "e-graph, score every class on the data, print a ranked table.",
                       epilog=BAD_LINES)
    r.add_argument("population", nargs="?", metavar="POPULATION",
                   help="candidates: one a line, or a tool's CSV (PySR, eggp, ...)")
    r.add_argument("--example", action="store_true",
                   help="run on the bundled example (AI Feynman I.6.2, 3,000 candidates)")
    r.add_argument("--data", metavar="DATA.csv", help="numeric CSV with a header row")
    r.add_argument("--target", metavar="COLUMN", help="the y column (default: the last column)")
    r.add_argument("--dialect", default="auto", help="population dialect (default: auto)")
    r.add_argument("--metric", default="r2", choices=METRICS, help="ranking metric (default r2)")
    r.add_argument("--fit", action="store_true", help="refit every class's constants (LM)")
    r.add_argument("--export", metavar="PATH", help="export the best model (format from suffix: "
                   ".so .c .ll .py .tex .json)")
    r.add_argument("--export-format", choices=("so", "c", "ll", "py", "sympy", "latex", "json"),
                   help="export format when the suffix does not tell")
    r.add_argument("--name", default="model", help="function name in exported code")
    r.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    r.add_argument("--pareto", metavar="PLOT.png", help="plot complexity vs loss (matplotlib)")
    r.add_argument("--top", type=int, default=10, metavar="K",
                   help="models shown in the table and the JSON (default 10; 0 = all)")
    r.add_argument("--rules", default="default", help="e-graph rule sets, comma-separated")
    r.add_argument("--time-limit", type=float, default=30.0, metavar="S",
                   help="e-graph saturation time limit in seconds (default 30)")
    r.add_argument("--dask", metavar="SCHEDULER",
                   help="score on a Dask cluster: 'local:N' (N worker processes), 'local', or a "
                        "scheduler address tcp://host:8786; --data may then be a Parquet "
                        "file/directory or a CSV glob (needs symcore[dask])")
    r.add_argument("--strict", action="store_true",
                   help="stop at the first bad population line (default: skip and report it)")
    r.set_defaults(func=_cmd_run)

    s = sub.add_parser("simplify", help="simplify one expression in the e-graph")
    s.add_argument("expr", metavar="EXPR")
    s.add_argument("--dialect", default="auto")
    s.add_argument("--rules", default="default",
                   help="rule sets, comma-separated: default, aggressive, params")
    s.add_argument("--to", default="symcore", metavar="DIALECT", help="print in this dialect")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_cmd_simplify)

    d = sub.add_parser("dedupe", help="group a population file into classes of equal functions",
                       epilog=BAD_LINES)
    d.add_argument("file", metavar="FILE")
    d.add_argument("--dialect", default="auto")
    d.add_argument("--rules", default="default")
    d.add_argument("--time-limit", type=float, default=30.0, metavar="S")
    d.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable line (default: skip and report it)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_cmd_dedupe)

    e = sub.add_parser("export", help="export one expression (so, c, ll, py, sympy, latex, json)")
    e.add_argument("expr", metavar="EXPR")
    e.add_argument("-o", "--output", required=True, metavar="PATH")
    e.add_argument("--format", choices=("so", "c", "ll", "py", "sympy", "latex", "json"),
                   help="default: from the output suffix")
    e.add_argument("--dialect", default="auto")
    e.add_argument("--name", default="model", help="C/Python function name")
    e.add_argument("--params", metavar="V0,V1,...", help="values of parameters p0, p1, ...")
    e.add_argument("--cpu", choices=("generic", "host"), default="generic",
                   help="format so: baseline instruction set (default) or this machine's CPU")
    e.add_argument("--runtime-params", action="store_true",
                   help="do not bake parameters in: exported functions take a params array")
    e.set_defaults(func=_cmd_export)

    m = sub.add_parser("metrics", help="judge a results table against ground truths (SRSD edit "
                       "distance, SRBench symbolic solution)")
    m.add_argument("results", metavar="RESULTS.csv",
                   help="CSV/TSV with an equation-name column and a SymPy-text prediction column")
    m.add_argument("--truth", required=True, metavar="FORMULAS",
                   help="ground truths: a formulas JSON or TSV (e.g. srsd_feynman_120.json)")
    m.add_argument("--method", choices=("srsd", "symcore"), default="srsd",
                   help="srsd: the benchmark's SymPy pipeline (default); symcore: canonical form")
    m.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="per-expression SymPy time limit in seconds (default 120, as SRSD)")
    m.add_argument("--digits", type=int, default=None, metavar="D",
                   help="round the predictions' floats to D decimals first (SRBench: 3)")
    m.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes (default: $SYMCORE_THREADS or the CPUs)")
    m.add_argument("--key", metavar="COLUMN", help="equation-name column of RESULTS")
    m.add_argument("--pred", metavar="COLUMN", help="prediction column of RESULTS")
    m.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    m.set_defaults(func=_cmd_metrics)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `symcore` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except _UserError as err:
        sys.stderr.write(f"symcore: error: {_one_line(err)}\n")
        return EXIT_USAGE
    except SymcoreError as err:  # typed: one line, no traceback; anything else keeps its own
        sys.stderr.write(f"symcore: error: {_one_line(err)}\n")
        return EXIT_ERROR
    except BrokenPipeError:  # e.g. `symcore run ... | head`: the reader left, not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as err:
        where = f" {err.filename!r}" if getattr(err, "filename", None) else ""
        sys.stderr.write(f"symcore: error:{where} {_one_line(err.strerror or err)}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("symcore: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
