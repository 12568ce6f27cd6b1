"""The main job behind `symcore run`: read a population, deduplicate and simplify it in one
e-graph, score every class with the compiled kernels, optionally refit constants, rank, export.

Usable from Python: `run(population, X, y, ...)` returns a `RunResult`; `load_csv` reads data.
"""

from __future__ import annotations

import csv
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from symcore.errors import DataError, DialectError, ParseError, SymcoreError
from symcore.ir import Expr
from symcore.columns import check_not_shifted
from symcore.walk import topo

__all__ = ["run", "RunResult", "Candidate", "Dataset", "load_csv", "METRICS"]

METRICS = ("r2", "mse", "rmse", "mae", "nmse")
_HIGHER_IS_BETTER = frozenset({"r2"})

#: progress(stage, done, total): called as work advances (the CLI draws a bar on a TTY)
Progress = Callable[[str, int, int], None]


# ---------------------------------------------------------------------------------------------
# Data

@dataclass(frozen=True)
class Dataset:
    """Features X (rows x columns), target y, and the CSV's names for both."""

    X: np.ndarray
    y: np.ndarray
    features: list[str]
    target: str


def load_csv(path: str | os.PathLike[str], target: str | None = None) -> Dataset:
    """Read a numeric CSV with a header row; `target` names the y column (default: the last).
    Every other column is a feature, in file order (x0, x1, ...).  Non-numeric cells, NaN/inf
    and ragged rows raise DataError naming the line and column."""
    p = os.fspath(path)
    try:
        fh = open(p, encoding="utf-8", newline="")
    except FileNotFoundError:
        raise DataError(f"data file not found: {p}") from None
    except OSError as err:
        raise DataError(f"cannot read data file {p}: {err.strerror or err}") from None
    with fh:
        try:
            rows = list(csv.reader(fh))
        except (csv.Error, UnicodeDecodeError) as err:
            raise DataError(f"{p}: not a readable CSV file: {err}") from None
    body = [(i, r) for i, r in enumerate(rows, 1) if r and any(c.strip() for c in r)]
    if not body:
        raise DataError(f"{p}: empty file (expected a header row and data rows)")
    (_, header), data = body[0], body[1:]
    header = [h.strip() for h in header]
    if target is None:
        target = header[-1]
    if target not in header:
        raise DataError(f"{p}: no target column {target!r}; columns are: {', '.join(header)}")
    if len(header) < 2:
        raise DataError(f"{p}: needs at least one feature column besides the target {target!r}")
    if not data:
        raise DataError(f"{p}: no data rows after the header")
    t = header.index(target)
    values = np.empty((len(data), len(header)))
    for k, (ln, r) in enumerate(data):
        if len(r) != len(header):
            raise DataError(f"{p}, line {ln}: {len(r)} field(s), the header has {len(header)}")
        for j, cell in enumerate(r):
            try:
                values[k, j] = float(cell)
            except ValueError:
                raise DataError(f"{p}, line {ln}, column {header[j]!r}: not a number: "
                                f"{cell.strip()[:40]!r}") from None
    bad = ~np.isfinite(values)
    if bad.any():
        k, j = map(int, np.argwhere(bad)[0])
        what = "y" if j == t else "X"
        raise DataError(f"{p}, line {data[k][0]}, column {header[j]!r}: {values[k, j]} in {what} "
                        f"({int(bad.sum())} non-finite cell(s) in total); remove or impute them")
    feats = [h for j, h in enumerate(header) if j != t]
    X = np.ascontiguousarray(np.delete(values, t, axis=1))
    return Dataset(X, np.ascontiguousarray(values[:, t]), feats, target)


# ---------------------------------------------------------------------------------------------
# Result

@dataclass
class Candidate:
    """One ranked model: an e-graph class (or, after refitting, every class sharing its
    structure)."""

    expr: Expr                 # simplified representative (constants refit when fit=True)
    score: float               # the metric's value on the data
    complexity: int            # nodes of the expression tree
    n_params: int              # fittable numbers (literals that would be refit)
    inputs: int                # population entries it stands for
    lines: list[int]           # their line numbers in the population file (1-based)
    classes: int = 1           # e-graph classes merged into it (> 1 only after refitting)
    fit_status: str | None = None
    score_before_fit: float | None = None
    rank: int = 0
    pareto: bool = False


@dataclass
class RunResult:
    """Everything `symcore run` reports."""

    candidates: list[Candidate]          # ranked, best first
    metric: str
    n_lines: int                         # population entries (used or not)
    n_inputs: int                        # entries used
    n_classes: int                       # e-graph classes
    errors: list[tuple[int, str]]        # (line, message) of skipped entries, by line
    timings: dict[str, float]
    stop_reason: str
    egraph: dict[str, Any]
    dialect: str | None
    n_rows: int
    features: list[str]
    target: str
    fitted: bool
    source: str = ""
    n_refit: int = 0                     # models after refitting, before the second e-graph pass
    exported: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # data too small for what was asked

    @property
    def best(self) -> Candidate:
        if not self.candidates:
            raise SymcoreError("no candidate to choose from")
        return self.candidates[0]


# ---------------------------------------------------------------------------------------------
# Pipeline

def _read_population(population: Any, dialect: str, names: list[str] | None
                     ) -> tuple[list[Expr], list[int], list[tuple[int, SymcoreError]],
                                str | None, str]:
    from symcore.io.files import read_file, read_many
    opts: dict[str, Any] = {}
    if names and all(n.isidentifier() for n in names):
        opts["names"] = names
    if isinstance(population, (str, os.PathLike)):
        p = Path(population)
        if not p.exists():
            raise DataError(f"population file not found: {p}")
        if p.is_dir():
            raise DataError(f"population path is a directory: {p}")
        try:
            pop = read_file(p, dialect=dialect, on_error="collect", **opts)
        except DialectError as err:
            if dialect != "auto":
                raise
            raise DataError(f"{p}: cannot detect the dialect ({err}); pass --dialect NAME, "
                            f"e.g. symcore, sympy, operon, pysr, gplearn, eggp") from None
        src = str(p)
    else:
        items = list(population)
        if all(isinstance(e, Expr) for e in items):
            return items, list(range(1, len(items) + 1)), [], None, "expressions"
        pop = read_many(items, dialect=dialect, on_error="collect", **opts)
        src = "lines"
    errors = [(int(ln), err) for ln, err in pop.errors]
    return list(pop.exprs), list(pop.line_numbers), errors, pop.dialect, src


def _raise_first(read_errors: list[tuple[int, SymcoreError]],
                 wide: list[tuple[int, str]]) -> None:
    """bad_lines="raise": the error of the first bad line, in file order."""
    first_read = min(read_errors, key=lambda t: t[0], default=None)
    if wide and (first_read is None or wide[0][0] < first_read[0]):
        raise DataError(f"line {wide[0][0]}: {wide[0][1]}")
    assert first_read is not None
    ln, err = first_read
    if isinstance(err, ParseError):
        raise ParseError(f"line {ln}: {err.reason}", err.text, err.pos, err.dialect) from None
    raise type(err)(f"line {ln}: {err}") from None


def _order_key(metric: str) -> Callable[[Candidate], tuple]:
    sign = -1.0 if metric in _HIGHER_IS_BETTER else 1.0

    def key(c: Candidate) -> tuple:
        loss = sign * c.score
        bad = not math.isfinite(loss)
        return (bad, 0.0 if bad else loss, c.complexity, -c.inputs)

    return key


def _fittable(expr: Expr) -> tuple[Expr, np.ndarray]:
    from symcore.params import lift_constants
    if expr.n_params:
        return lift_constants(expr, params=np.ones(expr.n_params))
    return lift_constants(expr)


def _mark_pareto(cands: list[Candidate], metric: str) -> None:
    sign = -1.0 if metric in _HIGHER_IS_BETTER else 1.0
    best = math.inf
    for c in sorted(cands, key=lambda c: (c.complexity, sign * c.score if
                                          math.isfinite(c.score) else math.inf)):
        loss = sign * c.score if math.isfinite(c.score) else math.inf
        c.pareto = loss < best
        if c.pareto:
            best = loss


def _columns_used(exprs: Sequence[Expr]) -> list[int]:
    """1 + the highest column index each expression reads (0 for none).  One fold over the
    distinct nodes of the whole population: expressions are hash-consed, so subterms shared
    between lines (and repeated lines) are visited once, not once per line."""
    top: dict[int, int] = {}
    for n in topo(exprs):
        if n.op == "var":
            top[id(n)] = n.value + 1
        elif not n.args:
            top[id(n)] = 0
        else:
            top[id(n)] = max([top[id(a)] for a in n.args])
    return [top[id(e)] for e in exprs]


def _drop_wide(exprs: list[Expr], lines: list[int], width: int, feats: Sequence[str]
               ) -> tuple[list[Expr], list[int], list[tuple[int, str]]]:
    """Split off the candidates that read a column the data does not have (bad lines)."""
    cols = _columns_used(exprs)
    if not cols or max(cols) <= width:
        return exprs, lines, []
    shown = ", ".join(feats[:8]) + (", ..." if len(feats) > 8 else "")
    keep_e, keep_l, bad = [], [], []
    for e, ln, c in zip(exprs, lines, cols):
        if c > width:
            bad.append((ln, f"uses variable x{c - 1} (column {c}) but the data has {width} "
                            f"feature column(s): {shown}"))
        else:
            keep_e.append(e)
            keep_l.append(ln)
    return keep_e, keep_l, bad


def _data_warnings(A: np.ndarray, Y: np.ndarray, metric: str) -> list[str]:
    out = []
    n = A.shape[0]
    if n < 2:
        out.append(f"the data has only {n} row: a score on one row says little, r2 and nmse are "
                   f"undefined (the target has no variance) and any model with a constant can "
                   f"match it exactly; use more rows")
    elif metric in ("r2", "nmse") and float(np.ptp(Y)) == 0.0:
        out.append(f"the target is constant over all {n} rows: {metric} is undefined (it divides "
                   f"by the target's variance); use metric mse, rmse or mae")
    return out


def run(population: Any, X: Any, y: Any, *, features: Sequence[str] | None = None,
        target: str = "y", metric: str = "r2", fit: bool = False, dialect: str = "auto",
        rules: str | Sequence[str] = "default", time_limit: float | None = 30.0,
        progress: Progress | None = None,
        bad_lines: Literal["skip", "raise"] = "skip",
        scorer: Callable[[list[Expr], str], np.ndarray] | None = None) -> RunResult:
    """Read `population` (a file path, a list of lines, or a list of Expr), deduplicate and
    simplify it in one e-graph, score every class on (X, y) with `metric`, and rank the classes.

    Bad lines: a line that does not read, or reads a variable beyond the data's columns, is
    skipped and listed in `RunResult.errors` (`bad_lines="raise"`: DataError/ParseError on the
    first instead).  Data too small for what is asked (one row, fewer rows than a model's
    constants) gives a RuntimeWarning, also listed in `RunResult.warnings`.

    With `fit=True` the numeric constants of every class are refit (Levenberg-Marquardt);
    classes whose expressions differ only in their constants then describe the same model and
    are reported once (fitted from the best-scoring member's constants).  Classes whose
    representative has parameter placeholders (`C`, `c`, `t[i]`) are always fitted: they have
    no value to score otherwise.

    `scorer(exprs, metric)` replaces the in-memory scoring of the classes (e.g. a
    `symcore.dask.DaskScorer` over data larger than memory); X, y are then a sample of the data
    for the checks, and `scorer.n_rows` the number of rows reported.  Not with `fit=True`."""
    from symcore.codegen.eval.kernels import compile as compile_kernels
    from symcore.rules.api import dedupe
    if metric not in METRICS:
        raise DataError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
    if scorer is not None and fit:
        raise DataError("fitting is not available with a distributed scorer; refit the chosen "
                        "models with symcore.dask.fit")
    if bad_lines not in ("skip", "raise"):
        raise DataError(f"bad_lines must be 'skip' or 'raise', got {bad_lines!r}")
    A = np.ascontiguousarray(X, dtype=np.float64)
    Y = np.ascontiguousarray(y, dtype=np.float64).reshape(-1)
    if A.ndim != 2 or A.shape[0] != Y.shape[0] or A.shape[0] == 0:
        raise DataError(f"X must be (rows, features) with as many rows as y; got {A.shape} and "
                        f"{Y.shape}")
    for what, arr in (("X", A), ("y", Y)):
        bad = ~np.isfinite(arr)
        if bad.any():
            at = [int(v) for v in np.argwhere(bad)[0]]
            where = f"row {at[0]}" + (f", column {at[1]}" if len(at) == 2 else "")
            raise DataError(f"{what} has {int(bad.sum())} non-finite value(s), first at {where}; "
                            f"remove or impute them")
    feats = list(features) if features is not None else [f"x{j}" for j in range(A.shape[1])]
    tell = progress or (lambda stage, done, total: None)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    tell("read", 0, 1)
    t0 = time.perf_counter()
    exprs, lines, read_errors, used_dialect, source = _read_population(population, dialect, feats)
    check_not_shifted(exprs, A.shape[1])  # before wide lines are skipped: never a shift
    exprs, lines, wide = _drop_wide(exprs, lines, A.shape[1], feats)
    if bad_lines == "raise" and (read_errors or wide):
        _raise_first(read_errors, wide)
    errors = sorted([(ln, str(err)) for ln, err in read_errors] + wide)
    timings["read"] = time.perf_counter() - t0
    tell("read", 1, 1)
    n_lines = len(exprs) + len(errors)
    if not exprs:
        raise DataError("no candidate could be used" + (f" ({len(errors)} bad line(s); "
                                                        f"first: line {errors[0][0]}: "
                                                        f"{errors[0][1]})" if errors else ""))
    notes = _data_warnings(A, Y, metric) if scorer is None else []

    tell("e-graph", 0, 1)
    t0 = time.perf_counter()
    d = dedupe(exprs, rules=rules, time_limit=time_limit)
    timings["e-graph"] = time.perf_counter() - t0
    tell("e-graph", 1, 1)
    reps = list(d.representatives)

    tell("score", 0, 1)
    t0 = time.perf_counter()
    needs_values = [k for k, r in enumerate(reps) if r.n_params]
    plain = [k for k, r in enumerate(reps) if not r.n_params]
    scores = np.full(len(reps), np.nan)
    if plain:
        if scorer is not None:
            scores[plain] = scorer([reps[k] for k in plain], metric)
        else:
            kern = compile_kernels([reps[k] for k in plain])
            scores[plain] = kern.score(A, Y, metric=metric)
    timings["score"] = time.perf_counter() - t0
    tell("score", 1, 1)

    cands = [Candidate(expr=r, score=float(scores[k]), complexity=r.size,
                       n_params=_fittable(r)[0].n_params, inputs=len(d.members[k]),
                       lines=[lines[i] for i in d.members[k]]) for k, r in enumerate(reps)]

    n_refit = 0
    if fit or needs_values:
        t0 = time.perf_counter()
        cands = _refit(cands, A, Y, metric, fit_all=fit, progress=tell)
        n_refit = len(cands)
        if fit:
            # refitting made constants equal: a second e-graph pass merges equal functions
            cands = _merge_equal(cands, A, Y, metric, rules, time_limit)
        timings["fit"] = time.perf_counter() - t0

    if fit or needs_values:
        under = [c.n_params for c in cands if (fit or c.expr.n_params) and
                 c.n_params > A.shape[0]]
        if under:
            notes.append(f"{len(under)} model(s) have more constants (up to {max(under)}) than "
                         f"the data has rows ({A.shape[0]}): their fitted constants are not "
                         f"determined by the data")
    for msg in notes:
        warnings.warn(msg, RuntimeWarning, stacklevel=2)

    cands.sort(key=_order_key(metric))
    for i, c in enumerate(cands, 1):
        c.rank = i
    _mark_pareto(cands, metric)
    timings["total"] = time.perf_counter() - t_all
    stats = dict(d.stats)
    return RunResult(candidates=cands, metric=metric, n_lines=n_lines, n_inputs=len(exprs),
                     n_classes=d.n_classes, errors=errors, timings=timings,
                     stop_reason=getattr(d.stop_reason, "value", str(d.stop_reason)),
                     egraph=stats, dialect=used_dialect, n_rows=int(getattr(scorer, "n_rows", A.shape[0])), features=feats,
                     target=target, fitted=bool(fit), source=source, n_refit=n_refit,
                     warnings=notes)


def _merge_equal(cands: list[Candidate], A: np.ndarray, Y: np.ndarray, metric: str,
                 rules: Any, time_limit: float | None) -> list[Candidate]:
    from symcore.codegen.eval.kernels import compile as compile_kernels
    from symcore.rules.api import dedupe
    if len(cands) < 2:
        return cands
    d = dedupe([c.expr for c in cands], rules=rules, time_limit=time_limit)
    if d.n_classes == len(cands):
        return cands
    reps = list(d.representatives)
    scores = compile_kernels(reps).score(A, Y, metric=metric) if not any(
        r.n_params for r in reps) else [math.nan] * len(reps)
    lossf = _order_key(metric)
    out = []
    for k, members in enumerate(d.members):
        group = sorted((cands[i] for i in members), key=lossf)
        if len(group) == 1:
            out.append(group[0])
            continue
        best = group[0]
        sc = float(scores[k])
        use_rep = math.isfinite(sc) and reps[k].size <= best.expr.size
        out.append(Candidate(
            expr=reps[k] if use_rep else best.expr, score=sc if use_rep else best.score,
            complexity=reps[k].size if use_rep else best.complexity,
            n_params=_fittable(reps[k] if use_rep else best.expr)[0].n_params,
            inputs=sum(c.inputs for c in group), lines=sorted(ln for c in group for ln in c.lines),
            classes=sum(c.classes for c in group), fit_status=best.fit_status,
            score_before_fit=best.score_before_fit))
    return out


_FIT_CHUNK = 64


def _refit(cands: list[Candidate], A: np.ndarray, Y: np.ndarray, metric: str, *,
           fit_all: bool, progress: Progress) -> list[Candidate]:
    """Refit constants; candidates with the same structure (constants aside) become one."""
    from symcore.codegen.eval.kernels import compile as compile_kernels
    from symcore.codegen.fit.api import fit as fit_constants
    sign = -1.0 if metric in _HIGHER_IS_BETTER else 1.0
    lossf = _order_key(metric)
    groups: dict[str, list[int]] = {}
    for k, c in enumerate(cands):
        if fit_all or c.expr.n_params:
            groups.setdefault(_fittable(c.expr)[0].digest(), []).append(k)
    models: dict[str, tuple[Expr, np.ndarray]] = {}
    for key, members in groups.items():
        members.sort(key=lambda i: lossf(cands[i]))   # best-scoring member first
        models[key] = _fittable(cands[members[0]].expr)
    keys = list(groups)
    fitted: list[Any] = []
    total = len(keys)
    progress("fit", 0, total)
    for s in range(0, total, _FIT_CHUNK):
        chunk = keys[s:s + _FIT_CHUNK]
        ms = [models[key][0] for key in chunk]
        p0s = [models[key][1] for key in chunk]
        fitted.extend(fit_constants(ms, A, Y, params0=p0s, lift=False) if ms else [])
        progress("fit", min(total, s + _FIT_CHUNK), total)
    new_exprs = [f.expr for f in fitted]
    new_scores = compile_kernels(new_exprs).score(A, Y, metric=metric) if new_exprs else []
    out: list[Candidate] = []
    used: set[int] = set()
    for key, f, sc in zip(keys, fitted, new_scores):
        members = groups[key]
        used.update(members)
        before = cands[members[0]]
        sc = float(sc)
        improved = math.isfinite(sc) and (not math.isfinite(before.score)
                                          or sign * sc <= sign * before.score)
        expr = f.expr if improved or before.expr.n_params else before.expr
        out.append(Candidate(expr=expr, score=sc if improved or before.expr.n_params
                             else before.score,
                             complexity=expr.size, n_params=models[key][0].n_params,
                             inputs=sum(cands[i].inputs for i in members),
                             lines=sorted(ln for i in members for ln in cands[i].lines),
                             classes=len(members), fit_status=f.status,
                             score_before_fit=before.score))
    out.extend(c for k, c in enumerate(cands) if k not in used)
    return out


# ---------------------------------------------------------------------------------------------
# Reports
