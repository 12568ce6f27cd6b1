"""The choices the public API accepts, as `Literal` types defined once (every layer imports them
from here), so signatures say what is allowed instead of `str` or `Any`."""

from __future__ import annotations

from typing import Literal, Union

__all__ = ["BuiltinDialect", "DialectName", "Numbers", "OnError", "RulesPreset", "CostName",
           "Dtype", "Tier", "Metric", "FitMethod", "Lift", "ExportFormat"]

#: the dialects symcore ships (symcore.io.dialects has one `Dialect` record per name)
BuiltinDialect = Literal["auto", "symcore", "gplearn", "operon", "eggp", "eggp_numpy", "pysr",
                         "sympy", "dysymnet", "e2e", "e2e_prefix", "dso", "nesymres", "bingo"]
#: a built-in dialect or one added with `register_dialect` (hence also any str)
DialectName = Union[BuiltinDialect, str]
#: what a reader makes of numeric literals: constants, or fittable parameters
Numbers = Literal["const", "params"]
#: a bad line in a population: raise at once, or collect (line, error) and go on
OnError = Literal["raise", "collect"]
#: rule-set presets of simplify/dedupe (a sequence of topic names is accepted too)
RulesPreset = Literal["default", "aggressive", "params"]
#: named cost models of extraction ("cycles": estimated CPU cycles, shared subterms once; a
#: dict of per-op weights or a callable is accepted too)
CostName = Literal["size", "params", "cycles"]
#: arithmetic and data type of compiled kernels
Dtype = Literal["float64", "float32"]
#: 0 = the batch interpreter (no compilation), 1 = fused JIT kernels, "auto" chooses
Tier = Literal["auto", 0, 1]
#: fitness computed inside the kernels
Metric = Literal["mse", "rmse", "mae", "r2", "nmse"]
#: constant-fitting algorithm: Levenberg-Marquardt, BFGS, or "auto" (BFGS above many params)
FitMethod = Literal["auto", "lm", "bfgs"]
#: which numbers `fit` fits: "auto"; literals lifted per distinct value or per occurrence (True);
#: only the parameters a frontend marked (False)
Lift = Literal["auto", "distinct", "occurrence", "marked", True, False]
#: file formats `export` writes
ExportFormat = Literal["so", "c", "ll", "py", "sympy", "latex", "json"]
