"""The facade's public names: what `from symcore import *` brings in, renamed names that keep
working for one release (with a DeprecationWarning), and the typed choices of the public API."""

from __future__ import annotations

import builtins
import subprocess
import sys

import pytest

import symcore


def test_star_import_does_not_shadow_builtins():
    assert "compile" not in symcore.__all__
    assert symcore.compile.__module__ == "symcore.codegen.eval.kernels"
    ns: dict = {}
    exec("from symcore import *", ns)
    assert not set(ns) & set(dir(builtins)) - {"__builtins__"}


def test_every_public_name_resolves():
    for name in symcore.__all__:
        assert getattr(symcore, name) is not None, name


def test_dedup_is_the_old_name_of_dedupe_result():
    from symcore.rules import api
    assert "Dedup" not in symcore.__all__
    with pytest.warns(DeprecationWarning, match="DedupeResult"):
        assert api.Dedup is api.DedupeResult
    code = ("import warnings, symcore; warnings.simplefilter('error');"
            "print(symcore.dedupe([symcore.var(0)]).__class__.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "DedupeResult"


def test_read_with_params_always_returns_the_pair():
    e, p = symcore.read_with_params("2.5 * x_1 + c", dialect="nesymres", numbers="params")
    assert str(e) == "p0 * x0 + p1"
    assert p.tolist()[0] == 2.5 and len(p) == 2
    with pytest.warns(DeprecationWarning, match="read_with_params"):
        e2, p2 = symcore.read("2.5 * x_1 + c", dialect="nesymres", numbers="params",
                              with_params=True)
    assert e2 is e and p2.tolist()[0] == 2.5
    assert symcore.read("2.5 * x_1", dialect="nesymres") is symcore.read_with_params(
        "2.5 * x_1", dialect="nesymres")[0]


def test_literal_types_list_what_the_code_accepts():
    from typing import get_args

    from symcore import types
    from symcore.codegen.eval.kernels import METRICS
    from symcore.codegen.export.api import FORMATS
    from symcore.io.dialects import DIALECTS
    from symcore.rules.rulesets import PRESETS
    assert set(get_args(types.Metric)) == set(METRICS)
    assert set(get_args(types.RulesPreset)) == set(PRESETS)
    assert set(get_args(types.BuiltinDialect)) - {"auto"} == set(DIALECTS)
    assert set(get_args(types.ExportFormat)) == set(FORMATS)
    assert set(get_args(types.Dtype)) == {"float64", "float32"}
