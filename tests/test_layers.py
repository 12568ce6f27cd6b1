"""Arrows point down only, with no cycles: the module import graph, read from the source with
`ast` (absolute and relative imports, top level and inside functions; `if TYPE_CHECKING:` blocks
skipped), must have no cycle, no import of the `symcore` facade from inside the package, and
respect the layers:

    core (symcore/*.py: ops, ir, evaluate, params, errors, ...)   imports core only
    io (symcore/io)                                               core, io
    rules (symcore.rules = rules/)                                core, rules
    codegen (symcore.codegen = codegen/)                          core, codegen
        + codegen/export may use io's printers and sympy bridge for the py/sympy/latex/json
          exports (the one arrow across: export is the last step of the data flow)
    app, session, integrations, metrics, dask                     everything below

egglog stays in rules/, llvmlite in codegen/; importing symcore loads neither, nor any optional
integration."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# source folder -> dotted package it installs as (pyproject.toml [tool.setuptools.package-dir])
PACKAGES = {"symcore": ROOT / "symcore", "symcore.rules": ROOT / "rules",
            "symcore.codegen": ROOT / "codegen"}
FACADE = "symcore"
TOP_LEVEL = ("symcore.app", "symcore.session", "symcore.integrations", "symcore.metrics",
             "symcore.dask")
ALLOWED = {
    "core": {"core"},
    "io": {"core", "io"},
    "rules": {"core", "rules"},
    "codegen": {"core", "codegen", "codegen.export"},
    "codegen.export": {"core", "codegen", "codegen.export", "io"},
    "top": {"core", "io", "rules", "codegen", "codegen.export", "top"},
}


# -- the graph -------------------------------------------------------------------------------

def modules(packages: dict[str, Path]) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py file under each package folder."""
    out: dict[str, Path] = {}
    for pkg, folder in packages.items():
        for f in sorted(folder.rglob("*.py")):
            parts = [pkg, *f.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = f
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under `if TYPE_CHECKING:`."""
    out: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return out


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, int, str]]:
    """(imported module, line, how it was written) for each import in one module.  `from P import
    X` imports the module P.X when that is a module, else P itself (X is an attribute of P)."""
    is_pkg = path.name == "__init__.py"
    out: list[tuple[str, int, str]] = []
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                out.append((a.name, node.lineno, f"import {a.name}"))
            continue
        if node.level:
            base = name.split(".") if is_pkg else name.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ""
        for a in node.names:
            sub = f"{mod}.{a.name}"
            target = sub if sub in known else mod
            out.append((target, node.lineno, f"from {'.' * node.level}{node.module or ''} "
                                             f"import {a.name}"))
    return out


def graph(packages: dict[str, Path]) -> tuple[dict[str, Path], dict[str, dict[str, tuple[int, str]]]]:
    """The package's modules and its internal import edges: importer -> {imported: (line, text)}."""
    mods = modules(packages)
    known = set(mods)
    edges: dict[str, dict[str, tuple[int, str]]] = {m: {} for m in mods}
    for m, path in mods.items():
        for target, line, text in imports_of(m, path, known):
            if target in known and target != m:
                edges[m].setdefault(target, (line, text))
    return mods, edges


def cycles(edges: dict[str, dict[str, tuple[int, str]]]) -> list[list[str]]:
    """One concrete cycle per strongly connected component with more than one module (Tarjan,
    iterative), each as [a, b, ..., a]."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    comps: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    comps.append(sorted(comp))
    return [_cycle_in(comp, edges) for comp in comps]


def _cycle_in(comp: list[str], edges: dict[str, dict[str, tuple[int, str]]]) -> list[str]:
    # shortest way back to the component's first module (breadth-first inside the component)
    inside = set(comp)
    start = comp[0]
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges[v]):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [*reversed(path), start]
                if w in inside and w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - an SCC has one


def layer(mod: str) -> str | None:
    if mod == FACADE:
        return None
    if any(mod == t or mod.startswith(t + ".") for t in TOP_LEVEL):
        return "top"
    for prefix, name in (("symcore.codegen.export", "codegen.export"), ("symcore.codegen", "codegen"),
                         ("symcore.rules", "rules"), ("symcore.io", "io")):
        if mod == prefix or mod.startswith(prefix + "."):
            return name
    return "core"


def _where(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _describe_cycle(cyc: list[str], edges: dict[str, dict[str, tuple[int, str]]],
                    mods: dict[str, Path]) -> str:
    steps = []
    for a, b in zip(cyc, cyc[1:]):
        line, text = edges[a][b]
        steps.append(f"    {_where(mods[a])}:{line}  {text}")
    return " -> ".join(cyc) + "\n" + "\n".join(steps)


def violations(packages: dict[str, Path]) -> dict[str, list[str]]:
    """Every broken rule, by kind: 'cycle', 'facade', 'layer'."""
    mods, edges = graph(packages)
    out: dict[str, list[str]] = {"cycle": [], "facade": [], "layer": []}
    for cyc in cycles(edges):
        out["cycle"].append(_describe_cycle(cyc, edges, mods))
    for m, targets in sorted(edges.items()):
        where = _where(mods[m])
        for t, (line, text) in sorted(targets.items()):
            if t == FACADE and m != FACADE:
                out["facade"].append(f"{where}:{line}  {text}  (import the defining module)")
                continue
            src, dst = layer(m), layer(t)
            if src is not None and dst is not None and dst not in ALLOWED[src]:
                out["layer"].append(f"{where}:{line}  {text}  ({src} must not import {dst})")
    return out


# -- the project -----------------------------------------------------------------------------

_FOUND = None


def _found() -> dict[str, list[str]]:
    global _FOUND
    if _FOUND is None:
        _FOUND = violations(PACKAGES)
    return _FOUND


def test_every_subpackage_is_in_the_graph():
    mods = modules(PACKAGES)
    for m in ("symcore.ir", "symcore.io.readers", "symcore.app.cli", "symcore.rules.api",
              "symcore.codegen.llvm.jit", "symcore.codegen.eval.kernels",
              "symcore.codegen.grad.jacobian", "symcore.codegen.fit.api",
              "symcore.codegen.export.api"):
        assert m in mods, m


@pytest.mark.parametrize("kind", ["cycle", "facade", "layer"])
def test_no_import_violations(kind):
    found = _found()[kind]
    assert not found, f"{len(found)} {kind} violation(s):\n" + "\n".join(found)


@pytest.mark.parametrize("layer_dir,forbidden", [
    ("rules", ("llvmlite",)),
    ("codegen", ("egglog",)),
    ("symcore", ("egglog", "llvmlite")),
])
def test_backends_stay_in_their_layer(layer_dir, forbidden):
    bad = []
    for f in sorted((ROOT / layer_dir).rglob("*.py")):
        for node in _import_nodes(ast.parse(f.read_text(), str(f))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) \
                else [node.module or ""] if node.level == 0 else []
            bad += [f"{f.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                    if n.split(".")[0] in forbidden]
    assert not bad, "\n".join(bad)


def test_importing_symcore_loads_no_backend_and_no_optional_integration():
    optional = ("egglog", "llvmlite", "gplearn", "sklearn", "deap", "dask", "scipy", "pandas")
    code = ("import sys, symcore; symcore.read('x0 * sin(x1)', dialect='sympy'); "
            f"print(sorted(m for m in {optional!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the checker itself fails on what it must catch ------------------------------------------

def _tree(tmp: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)
    return {"symcore": tmp / "symcore", "symcore.rules": tmp / "rules",
            "symcore.codegen": tmp / "codegen"}


def test_checker_finds_cycles_facade_imports_and_upward_arrows(tmp_path):
    pk = _tree(tmp_path, {
        "symcore/__init__.py": "from symcore.ir import Expr\n",
        "symcore/ir.py": "from . import ops\nfrom typing import TYPE_CHECKING\n"
                         "if TYPE_CHECKING:\n    from symcore.io import printers\n",
        "symcore/ops.py": "def f():\n    from .ir import Expr\n",        # lazy: still a cycle
        "symcore/io/__init__.py": "",
        "symcore/io/printers.py": "from ..ir import Expr\n",
        "rules/__init__.py": "",
        "rules/api.py": "import symcore\nfrom symcore.codegen.eval import kernels\n",
        "codegen/__init__.py": "",
        "codegen/eval/__init__.py": "",
        "codegen/eval/kernels.py": "from symcore import compile\nfrom symcore import ir\n",
        "codegen/export/__init__.py": "",
        "codegen/export/api.py": "from symcore.io.printers import to_text\n",
    })
    found = violations(pk)
    assert [c.splitlines()[0] for c in found["cycle"]] == ["symcore.ir -> symcore.ops -> symcore.ir"]
    assert sorted(v.split()[1:3] for v in found["facade"]) == \
        [["from", "symcore"], ["import", "symcore"]]
    assert len(found["layer"]) == 1 and "rules must not import codegen" in found["layer"][0]


def test_checker_accepts_a_clean_tree(tmp_path):
    pk = _tree(tmp_path, {
        "symcore/__init__.py": "from symcore.ir import Expr\n",
        "symcore/ir.py": "from symcore import ops\n",
        "symcore/ops.py": "import numpy\n",
        "symcore/app/cli.py": "from symcore.codegen.eval.kernels import compile\n",
        "rules/api.py": "from symcore.ir import Expr\n",
        "codegen/eval/kernels.py": "from ...ir import Expr\n",
    })
    assert violations(pk) == {"cycle": [], "facade": [], "layer": []}
