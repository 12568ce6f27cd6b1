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
