"""Does the e-graph stage pay for itself?  Per population: inputs, distinct strings, classes
(symcore.dedupe, SymPy's automatic canonical form split where it merged numerically different
members, per-member `simplify`), dedupe time (cold: per-node canonical cache cleared; warm:
the same population again, as in a search where generations share subtrees), time to score
every distinct candidate vs the classes only (tier-0, 1,000 rows), and dedupe + score(classes)
against score(all); and the pairs of distinct members of one class that `simplify` prints
identically (issue 13 asks >= 99 %), with the classes whose members all print alike.

Populations: the harvested gplearn / pyoperon ones in tests/fixtures, the frontend outputs in
/work/shared/data/frontends, seeded random ones (40 % random trees, 60 % equivalent variants).
Timings: interleaved repeats (every measurement of every population once per round), medians;
wall and CPU seconds (on a loaded machine wall time is inflated by other processes).
Run: python bench/bench_dedupe.py [--sizes 1000,10000] [--repeats 3] [--no-sympy] [--huge]
--huge [--huge-cases small,sum,egraph,400k,1.7M]: instead of the table above, the time limit
on adversarial input (issue 12: it holds within 10 %): all-distinct random candidates, each
case in a fresh process, dedupe cold then warm (the canonical forms cached, so the later
phases get the time); per run the limit, elapsed wall seconds (the collector's traversal of
the objects the call allocated included), their ratio, stop reason, classes, peak RSS and
the phases' seconds.  The 1.7M case takes ~3 min and ~4 GB; 'sum' is `simplify` of one
20,000-term sum (the canonical pass is quadratic in the terms of a sum).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import symcore
from symcore import Expr, call, const, var
from symcore.ir import replace, topo
from symcore.rules.api import dedupe, simplify
from symcore.rules.canonical import clear_cache

UN = ("sin", "cos", "exp", "log", "sqrt", "square", "neg", "abs", "tanh")
BIN = ("add", "sub", "mul", "div")
CONSTS = (0.5, 1.5, 2.0, 3.0, -1.0, 0.1, 4.2)
ROOT = Path(__file__).resolve().parent.parent
FRONTENDS = Path("/work/shared/data/frontends")


def base_tree(rng: random.Random, n_vars: int, size: int) -> Expr:
    if size <= 1:
        return var(rng.randrange(n_vars)) if rng.random() < 0.7 else const(rng.choice(CONSTS))
    if size == 2 or rng.random() < 0.25:
        return call(rng.choice(UN), base_tree(rng, n_vars, size - 1))
    left = rng.randint(1, size - 2)
    return call(rng.choice(BIN), base_tree(rng, n_vars, left), base_tree(rng, n_vars,
                                                                           size - 1 - left))


def _variant_once(rng: random.Random, e: Expr) -> Expr:
    """Rewrite one random node of `e` into an equivalent spelling."""
    target = rng.choice(topo([e]))
    k = rng.randrange(7)
    if k == 0 and target.op in ("add", "mul"):
        new = call(target.op, target.args[1], target.args[0])
    elif k == 1 and target.op in ("add", "mul") and target.args[0].op == target.op:
        (a, b), c = target.args[0].args, target.args[1]
        new = call(target.op, a, call(target.op, b, c))
    elif k == 2:
        new = call("mul", target, const(1.0))
    elif k == 3:
        new = call("add", target, const(0.0))
    elif k == 4:
        new = call("neg", call("neg", target))
    elif k == 5 and target.op == "sub":
        new = call("add", target.args[0], call("neg", target.args[1]))
    elif k == 6 and target.op == "square":
        new = call("mul", target.args[0], target.args[0])
    else:
        new = call("mul", const(1.0), target)
    return replace(e, target, new)


def population(n: int, seed: int, n_vars: int = 3) -> list[Expr]:
    rng = random.Random(seed)
    n_base = max(1, int(0.4 * n))
    bases = [base_tree(rng, n_vars, rng.randint(3, 14)) for _ in range(n_base)]
    out = list(bases)
    while len(out) < n:
        e = rng.choice(bases)
        for _ in range(rng.randint(1, 3)):
            e = _variant_once(rng, e)
        out.append(e)
    rng.shuffle(out)
    return out


# ---------------------------------------------------------------------------------------------
# populations: (name, texts or None, expressions)

def _read_lines(path: Path, dialect: str | None) -> tuple[list[str], list[Expr]]:
    from symcore.io.files import read_file
    pop = read_file(path, dialect) if dialect else read_file(path)
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    return lines, list(pop)


def populations(sizes: list[int]) -> list[tuple[str, list[str], list[Expr]]]:
    out = []
    for fname, dialect in (("gplearn_population.txt", "gplearn"),
                           ("pyoperon_population.txt", "operon")):
        path = ROOT / "tests" / "fixtures" / fname
        if path.exists():
            out.append((fname.split("_")[0],) + _read_lines(path, dialect))
    if FRONTENDS.is_dir():
        for path in sorted(FRONTENDS.iterdir()):
            if path.suffix == ".tsv":
                continue
            try:
                lines, exprs = _read_lines(path, None)
            except symcore.SymcoreError as err:   # pragma: no cover - reported, not fatal
                print(f"# skipped {path.name}: {err}", file=sys.stderr)
                continue
            if len(exprs) >= 10:
                out.append((path.name.replace("predicted_tree", "").strip("._"), lines, exprs))
    for n in sizes:
        exprs = population(n, seed=n)
        out.append((f"random-{n}", [str(e) for e in exprs], exprs))
    return out


# ---------------------------------------------------------------------------------------------
# classes of the peers

def _values(exprs: list[Expr], n_vars: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    X = np.vstack([rng.uniform(-3, 3, size=(48, n_vars)), rng.uniform(0.1, 2, size=(16, n_vars)),
                   np.zeros((1, n_vars)), np.ones((1, n_vars))])
    return np.array([symcore.evaluate(e, X) for e in exprs])


def _different(a: np.ndarray, b: np.ndarray) -> bool:
    both = np.isfinite(a) & np.isfinite(b)
    with np.errstate(all="ignore"):
        return bool((both & ~np.isclose(a, b, rtol=1e-6, atol=1e-9)).any())


def sound_split(groups: dict, V: np.ndarray) -> tuple[int, int]:
    """(classes after splitting every group where members differ numerically, groups split)."""
    classes = split = 0
    for members in groups.values():
        heads: list[int] = []
        for i in members:
            if not any(not _different(V[h], V[i]) for h in heads):
                heads.append(i)
        classes += len(heads)
        split += len(heads) > 1
    return classes, split


def sympy_classes(exprs: list[Expr], V: np.ndarray) -> tuple[int, int]:
    from symcore.io.sympy_bridge import to_sympy
    groups: dict = {}
    for i, e in enumerate(exprs):
        try:
            key = to_sympy(e)
        except Exception:   # noqa: BLE001 - an op SymPy lacks: its own class
            key = ("unconverted", i)
        groups.setdefault(key, []).append(i)
    return sound_split(groups, V)


def unsound_merges(classes: list[list[int]], V: np.ndarray) -> int:
    return sum(any(_different(V[m[0]], V[i]) for i in m[1:]) for m in classes)


# ---------------------------------------------------------------------------------------------

def same_text(members: list[list[int]], uniq_of: list[int], text_of: list[str]) -> str:
    """Pairs of distinct members that dedupe puts in one class and `simplify` prints identically
    (canonical extraction), over all such pairs; and the same per class (all members alike)."""
    same = total = same_cls = n_cls = 0
    for m in members:
        distinct = sorted({uniq_of[i] for i in m})
        if len(distinct) < 2:
            continue
        counts: dict[str, int] = {}
        for u in distinct:
            counts[text_of[u]] = counts.get(text_of[u], 0) + 1
        n = len(distinct)
        total += n * (n - 1) // 2
        same += sum(c * (c - 1) // 2 for c in counts.values())
        n_cls += 1
        same_cls += len(counts) == 1
    pct = 100.0 * same / total if total else 100.0
    return f"pairs {same}/{total} ({pct:.2f} %), classes {same_cls}/{n_cls}"


def _timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def measure(pops, repeats: int, with_sympy: bool, simplify_max: int) -> list[dict]:
    from symcore.codegen.eval.kernels import compile as kcompile
    rng = np.random.default_rng(1)
    rows = []
    for name, lines, exprs in pops:
        uniq = list(dict.fromkeys(exprs))
        n_vars = max(max((max(e.variables(), default=0) for e in uniq), default=0) + 1, 1)
        rows.append({"name": name, "exprs": exprs, "uniq": uniq, "n": len(exprs),
                     "strings": len(set(lines)), "n_vars": n_vars,
                     "X": rng.uniform(0.5, 2.0, size=(1000, n_vars)), "y": rng.normal(size=1000),
                     "cold": [], "warm": [], "all": [], "cls": []})
    kcompile([var(0)], tier=0).score(np.ones((4, 1)), np.ones(4))   # load the interpreter
    for _ in range(repeats):   # interleaved: every measurement of every population per round
        for r in rows:
            clear_cache()
            d, w, c = _timed(lambda: dedupe(r["exprs"]))
            r["cold"].append((w, c))
            d, w, c = _timed(lambda: dedupe(r["exprs"]))
            r["warm"].append((w, c))
            r["d"] = d
            _, w, c = _timed(lambda: kcompile(r["uniq"], tier=0).score(r["X"], r["y"]))
            r["all"].append((w, c))
            _, w, c = _timed(lambda: kcompile(d.representatives, tier=0).score(r["X"], r["y"]))
            r["cls"].append((w, c))
    for r in rows:
        d = r["d"]
        r["classes"] = d.n_classes
        r["canon"] = d.stats["canonical_classes"]
        r["sat"] = d.stats.get("saturated_forms", "-")
        exprs = r["exprs"]
        V = _values(r["uniq"], r["n_vars"])
        pos = {e: i for i, e in enumerate(r["uniq"])}
        r["unsound"] = unsound_merges([[pos[exprs[i]] for i in m] for m in d.members], V)
        if with_sympy:
            r["sympy"], r["sympy_split"] = sympy_classes(r["uniq"], V)
        if len(r["uniq"]) <= simplify_max:
            texts: dict = {}
            text_of: list[str] = []
            per, per_cpu = [], []
            for i, e in enumerate(r["uniq"]):
                s, w, c = _timed(lambda: simplify(e))
                per.append(w)
                per_cpu.append(c)
                texts.setdefault(str(s), []).append(i)
                text_of.append(str(s))
            r["simplify"] = len(texts)
            r["simplify_ms"] = 1e3 * statistics.median(per)
            r["simplify_cpu_ms"] = 1e3 * statistics.median(per_cpu)
            r["simplify_cpu_all"] = per_cpu
            r["same_text"] = same_text(d.members, [pos[e] for e in exprs], text_of)
    return rows


def _med(xs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(x[0] for x in xs), statistics.median(x[1] for x in xs)


def report(rows: list[dict]) -> None:
    head = (f"{'population':<30}{'N':>6}{'strs':>6}{'canon':>6}{'sat':>5}{'cls':>6}{'sympy':>6}"
            f"{'simpl':>6}{'bad':>4}  {'dedupe cold':>13}{'warm':>13}{'score all':>13}"
            f"{'score cls':>13}  {'pays?':>8}  s/1k(cold cpu)")
    print(head)
    print("-" * len(head))
    for r in rows:
        cw, cc = _med(r["cold"])
        ww, wc = _med(r["warm"])
        aw, ac = _med(r["all"])
        kw, kc = _med(r["cls"])
        # pays when dedupe (warm, CPU) + scoring the classes costs less than scoring everything
        pays = (wc + kc) / ac if ac > 0 else float("nan")
        print(f"{r['name'][:29]:<30}{r['n']:>6}{r['strings']:>6}{r['canon']:>6}{r['sat']:>5}"
              f"{r['classes']:>6}{r.get('sympy', '-'):>6}{r.get('simplify', '-'):>6}"
              f"{r['unsound']:>4}  {cw:6.3f}/{cc:5.3f}{ww:7.3f}/{wc:5.3f}{aw:7.3f}/{ac:5.3f}"
              f"{kw:7.3f}/{kc:5.3f}  {pays:7.2f}x  {1e3 * cc / max(r['n'], 1):.3f}")
    print("\ntimes are wall/cpu seconds (medians); canon = distinct canonical forms; sat = forms "
          "sent to the e-graph; sympy = SymPy canonical classes split where members differ "
          "numerically; simpl = classes of per-member simplify text; bad = symcore classes "
          "holding numerically different members; pays? = (dedupe warm + score classes) / "
          "score all, CPU (< 1: the e-graph pays)")
    extra = [f"{r['name']}: simplify median {r['simplify_ms']:.2f} ms/expr wall, "
             f"{r['simplify_cpu_ms']:.2f} ms CPU, same text "
             f"{r['same_text']}, sympy groups split {r.get('sympy_split', '-')}"
             for r in rows if "simplify_ms" in r]
    for line in extra:
        print(line)
    per = [c for r in rows for c in r.get("simplify_cpu_all", [])]
    if per:
        print(f"simplify median CPU ms per expression over all populations: "
              f"{1e3 * statistics.median(per):.2f} ({len(per)} expressions)")
    # issue 13: no population with more symcore classes than its peers find
    looser = [f"{r['name']} ({r['classes']} > {peer} {r[key]})" for r in rows
              for key, peer in (("sympy", "sympy"), ("simplify", "simpl"))
              if isinstance(r.get(key), int) and r["classes"] > r[key]]
    print(f"classes <= sympy and <= per-member simplify on every population: "
          f"{'yes' if not looser else 'no: ' + ', '.join(looser)}; unsound merges "
          f"{sum(r['unsound'] for r in rows)}")
    cold = [1e3 * _med(r["cold"])[1] / r["n"] for r in rows if r["n"] >= 500]
    warm = [1e3 * _med(r["warm"])[1] / r["n"] for r in rows if r["n"] >= 500]
    if cold:
        print(f"median dedupe CPU s per 1,000 candidates (populations >= 500): cold "
              f"{statistics.median(cold):.3f}, warm {statistics.median(warm):.3f}")


#: name: (distinct candidates, time limit in seconds, dedupe keyword arguments)
HUGE_CASES: dict[str, tuple[int, float, dict]] = {
    "small": (20_000, 0.5, {}),
    "sum": (20_000, 1.0, {}),
    "egraph": (200_000, 12.0, {"saturation": "full"}),   # every form through the e-graph
    "400k": (400_000, 15.0, {}),
    "1.7M": (1_700_000, 60.0, {}),
}


def adversarial(n: int, seed: int = 7) -> list[Expr]:
    """n distinct candidates (a different constant each): nothing merges, every phase of
    dedupe sees every input."""
    rng = random.Random(seed)
    return [call(rng.choice(BIN), base_tree(rng, 4, rng.randint(2, 8)), const(i + 0.5))
            for i in range(n)]


def _long_sum(n: int, seed: int = 3) -> Expr:
    rng = random.Random(seed)
    e = None
    for i in range(n):
        term = call("mul", base_tree(rng, 4, rng.randint(2, 8)), const(i + 0.5))
        e = term if e is None else call("add", e, term)
    return e


def _elapsed(t: float) -> float:
    # the call leaves its objects in the paused collector's youngest generation: the next
    # allocation of a tracked object traverses them, in the caller's time (counted here)
    _ = [[]]
    return time.perf_counter() - t


def huge_case(name: str) -> None:
    """One row per run of case `name` (run in a fresh process: peak RSS is the case's own)."""
    import resource
    n, limit, kw = HUGE_CASES[name]
    t = time.perf_counter()
    exprs = [_long_sum(n)] if name == "sum" else adversarial(n)
    built = time.perf_counter() - t
    for run in ("cold", "warm"):
        gc.collect()
        t = time.perf_counter()
        try:
            if name == "sum":
                out = simplify(exprs[0], time_limit=limit, **kw)
                el = _elapsed(t)
                stop, classes = ("input returned" if out is exprs[0] else "simplified"), 1
                phases = ""
            else:
                d = dedupe(exprs, time_limit=limit, **kw)
                el = _elapsed(t)
                stop, classes = d.stop_reason.value, d.n_classes
                sec = d.stats["seconds"]
                phases = (f"canon {sec['canonical']:.1f} policy {sec['policy']:.1f} egraph "
                          f"{sec['egraph']:.1f} result {sec['extract']:.1f} speed "
                          f"{d.stats['speed']:.2f}")
        except symcore.SymcoreError as err:
            el = _elapsed(t)
            stop, classes, phases = f"{type(err).__name__}: {err}", 0, ""
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # KiB -> GiB
        print(f"{name:<7}{run:<5}{n:>10,}{limit:>7.1f}{el:>9.2f}{el / limit:>7.3f}  "
              f"{stop:<15}{classes:>10,}{rss:>7.2f}  {phases}  (built in {built:.0f} s)",
              flush=True)


def huge(names: list[str]) -> None:
    """The time-limit table: each case in a fresh process (no shared caches, own peak RSS)."""
    import subprocess
    print(f"{'case':<7}{'run':<5}{'inputs':>10}{'limit':>7}{'elapsed':>9}{'ratio':>7}  "
          f"{'stop':<15}{'classes':>10}{'RSS GB':>7}  phases (s)", flush=True)
    for name in names:
        if name not in HUGE_CASES:
            raise SystemExit(f"unknown case {name!r}: one of {', '.join(HUGE_CASES)}")
        subprocess.run([sys.executable, __file__, "--huge-case", name], check=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-sympy", action="store_true")
    ap.add_argument("--simplify-max", type=int, default=1200,
                    help="per-member simplify classes for populations up to this many distinct")
    ap.add_argument("--huge", action="store_true")
    ap.add_argument("--huge-cases", default=",".join(HUGE_CASES))
    ap.add_argument("--huge-case", help=argparse.SUPPRESS)   # one case, in a child process
    args = ap.parse_args()
    if args.huge_case:
        huge_case(args.huge_case)
        return
    if args.huge:
        huge([c for c in args.huge_cases.split(",") if c])
        return
    dedupe(population(50, 99))   # warm up imports and the prepared e-graph
    pops = populations([int(s) for s in args.sizes.split(",") if s])
    gc.collect()
    report(measure(pops, args.repeats, not args.no_sympy, args.simplify_max))


if __name__ == "__main__":
    main()
