"""Rules for the test suite itself: property tests take their example counts from the
Hypothesis profile (tests/conftest.py), never from a number written in the test."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import settings
from strategies import examples

TESTS = Path(__file__).resolve().parent


def test_no_hard_coded_max_examples():
    bad = []
    for f in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "settings":
                for kw in node.keywords:
                    if kw.arg == "max_examples" and not (
                            isinstance(kw.value, ast.Call)
                            and getattr(kw.value.func, "id", None) == "examples"):
                        bad.append(f"{f.relative_to(TESTS)}:{node.lineno}")
    assert not bad, "use max_examples=examples(fraction): " + ", ".join(bad)


def test_examples_scale_with_the_profile():
    n = settings.default.max_examples
    assert examples(1.0) == n
    assert examples(0.5) == max(1, round(n / 2))
    assert examples(1e-9) == 1
