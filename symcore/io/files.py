"""Reading populations: many expressions from lines or a file (plain lines, PySR/eggp CSV,
reggression, SNIP/TPSR TSV, JSON) into a `Population`."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from symcore.io.dialects import Dialect, get_dialect
from symcore.io.readers import _detect, _read_one, _settle
from symcore.errors import DataError, DialectError, ParseError, SymcoreError
from symcore.ir import Expr
from symcore.types import DialectName, OnError

__all__ = ["read_many", "read_file", "Population"]


@dataclass
class Population:
    """Expressions read from many lines, with their 1-based source lines and the errors."""

    exprs: list[Expr] = field(default_factory=list)
    line_numbers: list[int] = field(default_factory=list)
    errors: list[tuple[int, SymcoreError]] = field(default_factory=list)
    params: list[np.ndarray] = field(default_factory=list)
    dialect: str | None = None

    def __iter__(self) -> Iterator[Expr]:
        return iter(self.exprs)

    def __len__(self) -> int:
        return len(self.exprs)

    def __getitem__(self, i: Any) -> Any:
        return self.exprs[i]


def _lines(lines: "str | Iterable[str]") -> list[tuple[int, str]]:
    if isinstance(lines, str):
        lines = lines.splitlines()
    out = []
    for i, ln in enumerate(lines, 1):
        if not isinstance(ln, str):
            raise DataError(f"line {i} is not a string: {type(ln).__name__}")
        s = ln.strip()
        if s and not s.startswith("#"):
            out.append((i, s))
    return out


def _read_rows(rows: list[tuple[int, str, Any]], dialect: str, on_error: str,
               opts: dict[str, Any]) -> Population:
    if on_error not in ("raise", "collect"):
        raise DataError(f"on_error must be 'raise' or 'collect', got {on_error!r}")
    pop = Population()
    if dialect == "auto" and rows:
        sample: list[str] = []
        for _, text, _ in rows[:50]:
            sample.append(text)
            if len(sample) == 10:
                break
        try:
            try:
                dialect = _detect(sample, {**opts, "theta": None})[0]
            except DialectError as err:
                if not str(err).startswith("ambiguous"):
                    raise
                dialect = _settle([t for _, t, _ in rows], sample, {**opts, "theta": None})
        except DialectError:
            # some sample line may be bad: detect on the first line that detects alone
            for _, text, _ in rows:
                try:
                    dialect = _detect([text], {**opts, "theta": None})[0]
                    break
                except DialectError:
                    continue
            else:
                raise
    pop.dialect = dialect.name if isinstance(dialect, Dialect) else dialect
    # real populations repeat candidates (one gplearn population holds the same program 480
    # times): each distinct text is parsed once
    seen: dict[tuple[str, str], tuple[Expr, np.ndarray] | SymcoreError] = {}
    for ln, text, theta in rows:
        key = (text, repr(theta))
        try:
            hit = seen.get(key)
            if isinstance(hit, SymcoreError):
                raise hit
            if hit is None:
                o = opts if theta is None else {**opts, "theta": theta}
                try:
                    hit = _read_one(text, dialect, **o)
                except SymcoreError as err:
                    seen[key] = err
                    raise
                seen[key] = hit
            e, v = hit[0], hit[1].copy()
        except SymcoreError as err:
            if on_error == "raise":
                if isinstance(err, ParseError):
                    raise ParseError(f"line {ln}: {err.reason}", err.text, err.pos,
                                     err.dialect) from None
                raise type(err)(f"line {ln}: {err}") from None
            pop.errors.append((ln, err))
            continue
        pop.exprs.append(e)
        pop.line_numbers.append(ln)
        pop.params.append(v)
    return pop


def read_many(lines: "str | Iterable[str]", dialect: DialectName = "auto", *,
              on_error: OnError = "raise",
              **opts: Any) -> Population:
    """Read one expression per line (blank lines and `#` comments skipped).  on_error="collect"
    keeps going and lists (line, error) pairs in `Population.errors`."""
    o = _opts(opts)
    rows = [(i, s, None) for i, s in _lines(lines)]
    if dialect != "auto":
        get_dialect(dialect)
    return _read_rows(rows, dialect, on_error, o)


def _opts(opts: dict[str, Any]) -> dict[str, Any]:
    allowed = {"var_base", "names", "numbers", "placeholders", "theta"}
    bad = set(opts) - allowed
    if bad:
        raise DataError(f"unknown option(s) {sorted(bad)}; allowed: {sorted(allowed)}")
    return {"var_base": opts.get("var_base"), "names": opts.get("names"),
            "numbers": opts.get("numbers", "const"),
            "placeholders": opts.get("placeholders", True), "theta": opts.get("theta")}


_REGG_DIALECT = {".operon": "operon", ".pysr": "pysr", ".bingo": "bingo"}


def read_file(path: "str | os.PathLike[str]", dialect: DialectName = "auto", *,
              on_error: OnError = "collect",
              **opts: Any) -> Population:
    """Read a population file: one expression per line; PySR's hall_of_fame.csv (Equation);
    eggp/symregg results CSV (Expression, or Numpy + theta with dialect="eggp_numpy");
    reggression test files (`expression,params,fitness`; dialect from the suffix); SNIP/TPSR
    problem_formula_pairs.tsv (predicted_tree); a JSON list of symcore texts (or of
    {"expr": text, "params": [...]} objects, as `symcore.io.printers.to_json` writes them)."""
    o = _opts(opts)
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as fh:
            content = fh.read()
    except FileNotFoundError:
        raise DataError(f"no such file: {p}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {p}: {err}") from None
    if dialect != "auto":
        get_dialect(dialect)
    suffix = os.path.splitext(p)[1].lower()
    rows: list[tuple[int, str, Any]]
    if suffix == ".json" or (dialect in ("auto", "symcore") and _is_json_list(content)):
        rows = _json_rows(content, p)
        if dialect == "auto":
            dialect = "symcore"
    elif suffix in _REGG_DIALECT:
        rows = []
        for i, ln in enumerate(content.splitlines(), 1):
            if not ln.strip() or ln.lstrip().startswith("#"):
                continue
            parts = ln.rsplit(",", 2)
            expr = parts[0].strip()
            theta = parts[1].strip() if len(parts) == 3 and parts[1].strip() else None
            rows.append((i, expr, theta))
        if dialect == "auto":
            dialect = _REGG_DIALECT[suffix]
    else:
        first = content.split("\n", 1)[0]
        # PySR's older hall_of_fame files (and their .bkup) separate columns with '|';
        # SNIP/TPSR problem_formula_pairs files are tab-separated
        delim = "|" if "|" in first and "Equation" in first else "\t" if "\t" in first else ","
        header = [h.strip() for h in next(csv.reader([first], delimiter=delim))] \
            if first.strip() else []
        if any(c in header for c in ("Equation", "Expression", "Numpy", "predicted_tree")):
            rows, guess = _csv_rows(content, header, dialect, delim)
            if dialect == "auto":
                dialect = guess
        else:
            rows = [(i, s, None) for i, s in _lines(content.splitlines())]
    return _read_rows(rows, dialect, on_error, o)


def _is_json_list(content: str) -> bool:
    if not content.lstrip().startswith("["):
        return False
    try:
        return isinstance(json.loads(content), list)
    except json.JSONDecodeError:
        return False


def _json_rows(content: str, p: str) -> list[tuple[int, str, Any]]:
    try:
        data = json.loads(content)
    except json.JSONDecodeError as err:
        raise DataError(f"{p}: invalid JSON: {err}") from None
    if not isinstance(data, list):
        raise DataError(f"{p}: expected a JSON list of expressions")
    rows = []
    for i, item in enumerate(data, 1):
        if isinstance(item, str):
            rows.append((i, item, None))
        elif isinstance(item, dict) and isinstance(item.get("expr"), str):
            ps = item.get("params")
            if ps is not None:
                if not isinstance(ps, list):
                    raise DataError(f"{p}: item {i} has params that are not a list")
                ps = [math.nan if v is None else v for v in ps]
            rows.append((i, item["expr"], ps))
        else:
            raise DataError(f"{p}: item {i} is neither a string nor an object with 'expr'")
    return rows


def _csv_rows(content: str, header: list[str], dialect: str,
              delim: str = ",") -> tuple[list[tuple[int, str, Any]], str]:
    reader = csv.reader(io.StringIO(content), delimiter=delim)
    next(reader)
    if dialect == "eggp_numpy" and "Numpy" not in header:
        raise DataError(f"dialect eggp_numpy reads the CSV's 'Numpy' column, which this file "
                        f"does not have (columns: {', '.join(header)}); use dialect eggp for "
                        f"its 'Expression' column" if "Expression" in header else
                        f"dialect eggp_numpy reads the CSV's 'Numpy' column, which this file "
                        f"does not have (columns: {', '.join(header)})")
    if dialect == "eggp_numpy" or ("Expression" not in header and "Numpy" in header):
        col, guess, tcol = header.index("Numpy"), "eggp_numpy", (
            header.index("theta") if "theta" in header else None)
    elif "Expression" in header:
        col, guess, tcol = header.index("Expression"), "eggp", None
    elif "predicted_tree" in header:
        col, guess, tcol = header.index("predicted_tree"), "auto", None
    else:
        col, guess, tcol = header.index("Equation"), "pysr", None
    rows = []
    for rec in reader:
        ln = reader.line_num
        if not rec or col >= len(rec) or not rec[col].strip():
            continue
        theta = rec[tcol] if tcol is not None and tcol < len(rec) else None
        rows.append((ln, rec[col].strip(), theta))
    return rows, guess
