"""Harvested real populations (gplearn, pyoperon): one e-graph finds at most as many classes as
sympy's automatic canonical form, and never merges numerically different candidates."""

from __future__ import annotations

import os

import pytest

import symcore
from symcore.ir import topo
from symcore.ops import OPS

from rules_numeric import numerically_different, points

HERE = os.path.join(os.path.dirname(__file__), "..", "fixtures")
N = 300  # first N lines of each file: keeps the sympy side of the test fast


def _sympy_forms(exprs):
    import sympy
    memo = {}
    for n in topo(exprs):
        if n.op == "var":
            memo[n] = sympy.Symbol(f"x{n.value}")
        elif n.op == "const":
            memo[n] = sympy.Float(n.value)
        elif n.op == "param":
            memo[n] = sympy.Symbol(f"p{n.value}")
        else:
            memo[n] = OPS[n.op].sympy(*(memo[a] for a in n.args))
    return [memo[e] for e in exprs]


@pytest.mark.parametrize("fname,dialect", [("gplearn_population.txt", "gplearn"),
                                           ("pyoperon_population.txt", "operon")])
def test_real_population(fname, dialect):
    path = os.path.join(HERE, fname)
    if not os.path.exists(path):
        pytest.skip(f"{fname} not harvested")
    lines = [ln.strip() for ln in open(path) if ln.strip()][:N]
    exprs = [symcore.read(ln, dialect=dialect) for ln in lines]
    d = symcore.dedupe(exprs)
    n_sympy = len(set(_sympy_forms(exprs)))
    assert d.n_classes <= n_sympy
    n_vars = max(max(e.variables(), default=0) for e in exprs) + 1
    X = points(n_vars, seed=3)
    for mem in d.members:
        first = exprs[mem[0]]
        seen = {first}
        for i in mem[1:]:
            if exprs[i] in seen:
                continue
            seen.add(exprs[i])
            assert not numerically_different(first, exprs[i], X), (lines[mem[0]], lines[i])
