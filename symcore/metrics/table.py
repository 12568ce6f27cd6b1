"""A results table judged against a ground-truth file: per-equation edit distance and symbolic
solution, and the summary figures (what `symcore metrics RESULTS.csv --truth ...` prints).
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any

from symcore.metrics.edit_distance import tree_edit_distances
from symcore.metrics.solution import symbolic_solutions
from symcore.metrics.trees import Method, MetricsError

__all__ = ["load_truth", "load_results", "judge_table", "format_table"]

_TRUTH_KEYS = ("eq_name", "name", "equation_id", "class_name")
_TRUTH_EXPRS = ("sympy", "sympy_expr", "sympy_positional", "sympy_positional_x0..")
_RESULT_KEYS = ("eq_name", "dataset", "problem", "name", "equation_id", "key")
_RESULT_EXPRS = ("pred", "prediction", "expr", "expression", "model", "symbolic_model", "est_eq")


def _pick(cols: list[str], wanted: tuple[str, ...], what: str, path: str) -> str:
    for w in wanted:
        if w in cols:
            return w
    raise MetricsError(f"{path}: no {what} column (looked for {', '.join(wanted)}; "
                       f"the file has {', '.join(cols) or 'none'})")


def load_truth(path: str) -> dict[str, str]:
    """Ground truths by equation name, from a formulas JSON (list of records) or TSV."""
    if not os.path.exists(path):
        raise MetricsError(f"truth file not found: {path}")
    if path.endswith(".json"):
        with open(path) as f:
            rows = json.load(f)
        if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
            raise MetricsError(f"{path}: expected a JSON list of formula records")
    else:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t" if path.endswith(".tsv") else ","))
        if not rows:
            raise MetricsError(f"{path}: no formulas")
    cols = list(rows[0])
    k = _pick(cols, _TRUTH_KEYS, "equation-name", path)
    e = _pick(cols, _TRUTH_EXPRS, "SymPy-expression", path)
    return {str(r[k]): str(r[e]) for r in rows}


def load_results(path: str, key: str | None = None, pred: str | None = None
                 ) -> dict[str, str | None]:
    """Predictions by equation name from a CSV (or TSV) with a header row; an empty cell is
    a missing prediction."""
    if not os.path.exists(path):
        raise MetricsError(f"results file not found: {path}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t" if path.endswith(".tsv") else ","))
    if not rows:
        raise MetricsError(f"{path}: no result rows")
    cols = list(rows[0])
    k = key or _pick(cols, _RESULT_KEYS, "equation-name", path)
    p = pred or _pick(cols, _RESULT_EXPRS, "prediction", path)
    for c in (k, p):
        if c not in cols:
            raise MetricsError(f"{path}: no column {c!r} (the file has {', '.join(cols)})")
    return {str(r[k]): (r[p].strip() or None) if r[p] is not None else None for r in rows}


def judge_table(results: dict[str, str | None], truth: dict[str, str], *,
                method: Method = "srsd", timeout: float = 120.0, digits: int | None = None,
                workers: int | None = None) -> dict[str, Any]:
    """Per-equation figures for every ground truth (a truth without a result scores as the
    reference scores a missing estimate: distance 1, no solution) and the summary."""
    unknown = sorted(set(results) - set(truth))
    names = sorted(truth)
    pairs = [(results.get(n), truth[n]) for n in names]
    dists = tree_edit_distances(pairs, method=method, timeout=timeout, workers=workers)
    sols = symbolic_solutions(pairs, digits=digits, timeout=timeout, workers=workers)
    rows = []
    for n, (p, _), d, s in zip(names, pairs, dists, sols):
        rows.append({"equation": n, "pred": p, "ned": d.distance,
                     "ned_status": d.status if p is not None else "missing",
                     "solution": s.solution, "solution_kind": s.kind, "decided_by": s.decided_by})
    ok = [r["ned"] for r in rows if not math.isnan(r["ned"])]
    summary = {"equations": len(rows), "with_prediction": sum(p is not None for p, _ in pairs),
               "unmatched_results": unknown, "method": method,
               "mean_ned": (sum(ok) / len(ok)) if ok else math.nan,
               "ned_timeouts": sum(r["ned_status"] == "timeout" for r in rows),
               "ned_errors": sum(r["ned_status"] in ("error", "true_error", "true_timeout")
                                 for r in rows),
               "symbolic_solutions": sum(r["solution"] for r in rows),
               "solution_rate": (sum(r["solution"] for r in rows) / len(rows)) if rows else 0.0}
    return {"equations": rows, "summary": summary}


def format_table(out: dict[str, Any]) -> str:
    """Human-readable per-equation table and summary."""
    rows = out["equations"]
    w = max([len("equation")] + [len(r["equation"]) for r in rows])
    lines = [f"{'equation':<{w}}  {'NED':>6}  {'status':<12} {'solution':<9} {'kind':<8} model"]
    for r in rows:
        sol = "yes" if r["solution"] else "no"
        lines.append(f"{r['equation']:<{w}}  {r['ned']:>6.3f}  {r['ned_status']:<12} {sol:<9} "
                     f"{r['solution_kind'] or '-':<8} {r['pred'] or '(none)'}")
    s = out["summary"]
    lines.append("")
    lines.append(f"{s['equations']} equations ({s['with_prediction']} with a prediction), "
                 f"method {s['method']}: mean NED {s['mean_ned']:.4f}, "
                 f"symbolic solutions {s['symbolic_solutions']} ({100 * s['solution_rate']:.1f} %), "
                 f"NED timeouts {s['ned_timeouts']}, errors {s['ned_errors']}")
    if s["unmatched_results"]:
        lines.append(f"results without a ground truth (ignored): "
                     f"{', '.join(s['unmatched_results'][:10])}"
                     + (" ..." if len(s["unmatched_results"]) > 10 else ""))
    return "\n".join(lines)
