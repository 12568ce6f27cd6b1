"""The main job's report: the ranked table for people, the JSON document for machines, the
complexity/loss plot (symcore run's output, from a `RunResult`)."""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

from symcore.app.run import RunResult
from symcore.columns import header_names, with_names
from symcore.io.printers import to_text
from symcore.ir import Expr

__all__ = ["display", "format_report", "result_json", "pareto_plot"]


def display(expr: Expr, features: Sequence[str] | None) -> str:
    """symcore text with the data's column names for the variables."""
    if features:
        expr = with_names(expr, header_names(features))
    text = to_text(expr)
    import re
    return re.sub(r"\bx\d+:([A-Za-z_]\w*)", r"\1", text)


def _fmt_score(metric: str, v: float) -> str:
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if metric == "r2":
        return f"{v:.12f}" if v > -10 else f"{v:.4e}"
    return f"{v:.4e}"


def format_report(res: RunResult, top: int = 10, width: int = 140) -> str:
    """The ranked table and the summary, as printed by `symcore run`."""
    shown = res.candidates if top <= 0 else res.candidates[:top]
    head = (f"{'rank':>4}  {res.metric:>15}  {'size':>4}  {'params':>6}  {'inputs':>6}  "
            f"expression")
    lines = [f"{len(res.candidates)} model(s) ranked by {res.metric} on {res.n_rows} rows "
             f"(target {res.target}); * marks the complexity/{res.metric} Pareto front", "",
             head, "-" * min(width, len(head) + 70)]
    room = max(30, width - 51)
    for c in shown:
        text = display(c.expr, res.features)
        if len(text) > room:
            text = text[:room - 3] + "..."
        lines.append(f"{c.rank:>4}{'*' if c.pareto else ' '} {_fmt_score(res.metric, c.score):>15}"
                     f"  {c.complexity:>4}  {c.n_params:>6}  {c.inputs:>6}  {text}")
    if len(shown) < len(res.candidates):
        lines.append(f"  ... {len(res.candidates) - len(shown)} more (--top 0 shows all)")
    lines.append("")
    lines.extend(_summary(res))
    return "\n".join(lines)


def _summary(res: RunResult) -> list[str]:
    eg = res.egraph
    out = [f"inputs:  {res.n_lines} candidate(s) from {res.source}"
           + (f" (dialect {res.dialect})" if res.dialect else "")
           + (f", {len(res.errors)} unreadable/unusable line(s) skipped" if res.errors else ""),
           f"e-graph: {res.n_inputs} -> {res.n_classes} classes "
           f"({res.n_inputs / max(res.n_classes, 1):.1f} inputs per class; "
           f"{eg.get('enodes', '?')} e-nodes, {eg.get('iterations', '?')} iterations, "
           f"stopped: {res.stop_reason})"]
    if res.fitted:
        out.append(f"fit:     constants refit; {res.n_classes} classes -> {res.n_refit} models "
                   f"(same structure, same fit) -> {len(res.candidates)} after a second e-graph "
                   f"pass")
    if res.candidates:
        best = res.best
        out.append(f"best:    {display(best.expr, res.features)}")
    order = ["read", "e-graph", "score", "fit", "export", "total"]
    out.append("time:    " + ", ".join(f"{k} {res.timings[k]:.2f} s" for k in order
                                       if k in res.timings))
    for path in res.exported:
        out.append(f"export:  {path}")
    return out


def result_json(res: RunResult, top: int = 0) -> dict[str, Any]:
    """Plain-data form of the result (what `symcore run --json` prints)."""
    shown = res.candidates if top <= 0 else res.candidates[:top]

    def num(v: float | None) -> float | str | None:
        if v is None:
            return None
        return v if math.isfinite(v) else repr(v)

    return {
        "metric": res.metric,
        "summary": {"lines": res.n_lines, "inputs": res.n_inputs, "unreadable": len(res.errors),
                    "classes": res.n_classes, "models": len(res.candidates),
                    "rows": res.n_rows, "features": res.features, "target": res.target,
                    "dialect": res.dialect, "source": res.source, "fitted": res.fitted,
                    "stop_reason": res.stop_reason,
                    "egraph": {k: v for k, v in res.egraph.items() if k != "seconds"},
                    "seconds": {k: round(v, 6) for k, v in res.timings.items()},
                    "exported": res.exported, "warnings": res.warnings},
        "errors": [{"line": ln, "message": msg} for ln, msg in res.errors],
        "models": [{"rank": c.rank, "score": num(c.score), "expr": to_text(c.expr),
                    "display": display(c.expr, res.features), "complexity": c.complexity,
                    "params": c.n_params, "inputs": c.inputs, "classes": c.classes,
                    "lines": c.lines[:50], "pareto": c.pareto, "fit_status": c.fit_status,
                    "score_before_fit": num(c.score_before_fit), "digest": c.expr.digest()}
                   for c in shown],
    }


def pareto_plot(res: RunResult, path: str | os.PathLike[str]) -> None:
    """Complexity vs loss scatter with the Pareto front (needs matplotlib: extra `plot`)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SymcoreError("--pareto needs matplotlib: pip install 'symcore[plot]'") from None
    pts = [(c.complexity, (1.0 - c.score) if res.metric == "r2" else c.score, c.pareto)
           for c in res.candidates if math.isfinite(c.score)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([p[0] for p in pts if not p[2]], [max(p[1], 1e-300) for p in pts if not p[2]],
               s=10, alpha=0.4, label="classes")
    front = sorted((p for p in pts if p[2]), key=lambda p: p[0])
    ax.plot([p[0] for p in front], [max(p[1], 1e-300) for p in front], "o-", color="C3",
            label="Pareto front")
    ax.set_yscale("log")
    ax.set_xlabel("complexity (nodes)")
    ax.set_ylabel("1 - R²" if res.metric == "r2" else res.metric)
    ax.set_title(f"{len(res.candidates)} models from {res.n_lines} candidates")
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(os.fspath(path), dpi=120)
    except OSError as err:
        raise SymcoreError(f"cannot write {os.fspath(path)!r}: {err.strerror or err}") from None
    finally:
        plt.close(fig)
