"""The data flow is one way: symcore <- rules, symcore <- codegen; rules and codegen never import
each other; egglog stays in rules/, llvmlite in codegen/; importing symcore loads neither."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


@pytest.mark.parametrize("layer,forbidden", [
    ("rules", ("symcore.codegen", "llvmlite")),
    ("codegen", ("symcore.rules", "egglog")),
    ("symcore", ("egglog", "llvmlite")),
])
def test_layers_do_not_import_each_other(layer, forbidden):
    for f in sorted((ROOT / layer).glob("*.py")):
        bad = {m for m in _imports(f) if m.split(".")[0] in forbidden or m.startswith(forbidden)}
        assert not bad, f"{f.relative_to(ROOT)} imports {sorted(bad)}"


def test_importing_symcore_loads_no_backend():
    code = ("import sys, symcore; symcore.read('x0 * sin(x1)', dialect='sympy'); "
            "print(sorted(m for m in ('egglog', 'llvmlite') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
