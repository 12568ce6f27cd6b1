"""Session's cache targets (issue 14): (1) re-scoring a population already seen costs <= 5 % of
scoring it fresh (Expr and prefix-token paths; prefix programs are looked up in the native
table, codegen.eval.prefix_cache, where it runs); (2) with cache="equivalent", SymPy-rewritten
forms of seen candidates (expand, simplify, factor, argument shuffles, in turn) hit >= 90 %, with
the hit rate per rewrite next to what the canonical form alone would hit, and every hit checked
against the rewritten form's own fresh value; (3) 200 generations of fresh candidates (prefix
programs with cache="exact", Expr candidates with cache="equivalent") keep the cache within
max_entries: entries, the cache's byte estimate and process RSS, sampled per generation.

Run: python bench/bench_session.py [--repeats 5] [--pop 2000] [--rows 1000] [--quick]
Interleaved repeats, each on a new population (nothing warm from the previous one); medians.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np
import sympy

from symcore import call, const, var
from symcore.io.sympy_bridge import from_sympy, to_sympy
from symcore.ir import Expr
from symcore.errors import SymcoreError
from symcore.rules.canonical import canonical_all, clear_cache
from symcore.session import Session

UN = ("sin", "cos", "exp", "square")
BIN = ("add", "sub", "mul", "div")
CONSTS = (0.5, 1.5, 2.0, 3.0, 0.25)
#: gplearn-style token programs: symbol -> op
SYMBOLS = {"add": "add", "sub": "sub", "mul": "mul", "div": "pdiv", "sin": "sin", "cos": "cos"}
ARITY = {"add": 2, "sub": 2, "mul": 2, "div": 2, "sin": 1, "cos": 1}


def tree(rng: random.Random, n_vars: int, size: int) -> Expr:
    if size <= 1:
        return var(rng.randrange(n_vars)) if rng.random() < 0.7 else const(rng.choice(CONSTS))
    if size == 2 or rng.random() < 0.2:
        return call(rng.choice(UN), tree(rng, n_vars, size - 1))
    left = rng.randint(1, size - 2)
    return call(rng.choice(BIN), tree(rng, n_vars, left), tree(rng, n_vars, size - 1 - left))


def population(n: int, seed: int, n_vars: int = 3) -> list[Expr]:
    rng = random.Random(seed)
    return [tree(rng, n_vars, rng.randint(3, 25)) for _ in range(n)]


def program(rng: random.Random, n_vars: int, depth: int) -> list:
    """A gplearn-like prefix token list (fresh float objects for constants)."""
    if depth == 0 or rng.random() < 0.25:
        return [rng.randrange(n_vars)] if rng.random() < 0.7 else [rng.uniform(-1.0, 1.0)]
    f = rng.choice(tuple(ARITY))
    out = [f]
    for _ in range(ARITY[f]):
        out += program(rng, n_vars, depth - 1)
    return out


def programs(n: int, seed: int, n_vars: int = 3) -> list[list]:
    rng = random.Random(seed)
    return [program(rng, n_vars, rng.randint(2, 6)) for _ in range(n)]


def data(rows: int, n_vars: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.uniform(0.5, 3.0, (rows, n_vars))
    return X, X[:, 0] * X[:, 1] + np.sin(X[:, 2])


# -- (1) re-scoring ----------------------------------------------------------------------------

def rescoring(X: np.ndarray, y: np.ndarray, pop: int, repeats: int) -> None:
    print(f"(1) re-scoring a seen population vs scoring it fresh: {pop} candidates, "
          f"{len(y)} rows, {repeats} interleaved repeats (new population each)")
    cases = ("Expr, cache=exact", "Expr, cache=equivalent", "prefix tokens, cache=exact")
    fresh: dict[str, list[float]] = {c: [] for c in cases}
    again: dict[str, list[float]] = {c: [] for c in cases}
    native = False
    for r in range(repeats):
        exprs = population(pop, 100 + r)
        progs = programs(pop, 200 + r)
        for case in cases:
            clear_cache()
            mode = "equivalent" if "equivalent" in case else "exact"
            s = Session(X, y, cache=mode)
            if case.startswith("prefix"):
                t = time.perf_counter()
                a = s.score_prefix(progs, SYMBOLS)
                t1 = time.perf_counter()
                b = s.score_prefix(progs, SYMBOLS)
                t2 = time.perf_counter()
                native = s.__dict__.get("_pxc") is not None
            else:
                t = time.perf_counter()
                a = s.score(exprs)
                t1 = time.perf_counter()
                b = s.score(exprs)
                t2 = time.perf_counter()
            assert np.array_equal(a, b, equal_nan=True), "a re-scored value differs"
            fresh[case].append(t1 - t)
            again[case].append(t2 - t1)
    print(f"    {'path':<26} {'fresh ms':>9} {'re-score ms':>11} {'re-score/fresh':>14}  "
          f"target <= 5 %")
    for case in cases:
        f, a = statistics.median(fresh[case]), statistics.median(again[case])
        print(f"    {case:<26} {1e3 * f:>9.1f} {1e3 * a:>11.2f} {100 * a / f:>13.2f}%  "
              f"{'ok' if a <= 0.05 * f else 'MISSED'}")
    print(f"    prefix tokens looked up by the native table: {'yes' if native else 'no'}")


# -- (2) SymPy-rewritten forms under cache="equivalent" ---------------------------------------

def _shuffle(e: sympy.Expr, rng: random.Random) -> sympy.Expr:
    """Arguments of every Add/Mul in another order (unevaluated, so SymPy keeps the order)."""
    if not e.args:
        return e
    args = [_shuffle(a, rng) for a in e.args]
    if isinstance(e, (sympy.Add, sympy.Mul)):
        rng.shuffle(args)
        return e.func(*args, evaluate=False)
    return e.func(*args)


REWRITES = ("expand", "simplify", "factor", "shuffle")


def rewritten(exprs: list[Expr], seed: int) -> tuple[list[Expr], list[str], dict[str, int]]:
    """Each candidate rewritten by SymPy, the four rewrites in turn: sympy.expand,
    sympy.simplify, sympy.factor, or every Add/Mul's arguments shuffled (after SymPy's own
    automatic evaluation on conversion).  A form SymPy makes unreadable (zoo for a candidate
    that divides by 0.5 - 0.5) is left out and counted."""
    rng = random.Random(seed)
    out: list[Expr] = []
    hows: list[str] = []
    unreadable = {k: 0 for k in REWRITES}
    for i, e in enumerate(exprs):
        s = to_sympy(e)
        how = REWRITES[i % len(REWRITES)]
        if how == "expand":
            s2 = sympy.expand(s)
        elif how == "simplify":
            s2 = sympy.simplify(s)
        elif how == "factor":
            s2 = sympy.factor(s)
        else:
            s2 = _shuffle(s, rng)
        try:
            out.append(from_sympy(s2))
        except SymcoreError:
            unreadable[how] += 1
            continue
        hows.append(how)
    return out, hows, unreadable


def equivalent_hits(X: np.ndarray, y: np.ndarray, pop: int, seed: int = 7) -> float:
    exprs = population(pop, seed)
    # distinct classes only (by the key before expansion), so a hit is a rewritten form
    # meeting its own original or another seen candidate SymPy shows to be the same function
    canon = canonical_all(exprs)
    seen: set = set()
    base = []
    for e, k in zip(exprs, canon):
        if k not in seen:
            seen.add(k)
            base.append(e)
    t = time.perf_counter()
    forms, hows, unreadable = rewritten(base, seed)
    t_sympy = time.perf_counter() - t
    clear_cache()
    s = Session(X, y, cache="equivalent")
    s.score(base)
    n_classes = s.stats.classes
    h0, t0 = s.stats.hits, time.perf_counter()
    got = s.score(forms)
    t_forms = time.perf_counter() - t0
    hits = s.stats.hits - h0
    fresh = Session(X, y, cache=None).score(forms)
    ok = np.isfinite(fresh) & np.isfinite(got)
    wrong = int(np.sum(~np.isclose(got[ok], fresh[ok], rtol=1e-9, atol=0)))
    worst = float(np.max(np.abs(got[ok] - fresh[ok]) / np.abs(fresh[ok]), initial=0.0))
    rate = hits / len(forms)
    n_un = sum(unreadable.values())
    print(f"(2) cache='equivalent', SymPy-rewritten forms of {len(base)} seen distinct "
          f"candidates ({', '.join(f'{hows.count(k)} {k}' for k in REWRITES)}; {n_un} "
          f"unreadable left out; SymPy {t_sympy:.1f} s): hits {hits}/{len(forms)} = "
          f"{100 * rate:.1f} % (target >= 90 %: {'ok' if rate >= 0.9 else 'MISSED'}); "
          f"scoring the forms {1e3 * t_forms:.0f} ms")
    print(f"    the {len(base)} seen candidates are {n_classes} classes by the expanded key; "
          f"hits whose value differs from the form's own fresh score by > 1e-9 relative "
          f"(both finite): {wrong}, largest {worst:.1e} (rounding, amplified where a form is "
          f"ill-conditioned)")
    # per rewrite, and what the canonical form alone (the key before expansion) would hit
    seen_canon = set(canonical_all(base))
    before = [c in seen_canon for c in canonical_all(forms)]
    s2 = Session(X, y, cache="equivalent")
    s2.score(base)
    per: dict[str, list[int]] = {k: [] for k in REWRITES}
    was: dict[str, list[bool]] = {k: [] for k in REWRITES}
    for f, how, b in zip(forms, hows, before):
        h = s2.stats.hits
        s2.score([f])
        per[how].append(s2.stats.hits - h)
        was[how].append(b)
    print("    by rewrite (expanded key / canonical form alone): " + ", ".join(
        f"{k} {100 * np.mean(per[k]):.1f} / {100 * np.mean(was[k]):.1f} %"
        for k in REWRITES if per[k]) + f"; all {100 * rate:.1f} / {100 * np.mean(before):.1f} %")
    return rate


# -- (3) memory over 200 generations -----------------------------------------------------------

def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def memory(X: np.ndarray, y: np.ndarray, pop: int, gens: int, max_entries: int,
           path: str) -> None:
    """`gens` generations of fresh candidates through one Session: entries, the cache's own
    byte estimate and the process RSS, sampled; once the cache is full they must stay flat."""
    mode = "exact" if path == "prefix" else "equivalent"
    s = Session(X, y, cache=mode, max_entries=max_entries)
    marks = sorted({1, gens // 20, gens // 10, gens // 4, gens // 2, 3 * gens // 4, gens} - {0})
    rows: list[tuple[int, int, float, float]] = []
    worst_entries = 0
    t = time.perf_counter()
    for g in range(gens):
        if path == "prefix":
            s.score_prefix(programs(pop, 10_000 + g), SYMBOLS)
        else:
            s.score(population(pop, 20_000 + g))
        worst_entries = max(worst_entries, s.stats.entries)
        if g + 1 in marks:
            rows.append((g + 1, s.stats.entries, s.stats.memory / 2**20, _rss_mb()))
    secs = time.perf_counter() - t
    full_at = -(-max_entries // pop)
    label = ("prefix programs, cache='exact'" if path == "prefix"
             else "Expr candidates, cache='equivalent'")
    print(f"(3) {gens} generations x {pop} fresh {label}, max_entries={max_entries} "
          f"(full from generation ~{full_at}; {secs:.0f} s):")
    print(f"    {'generation':>10} {'entries':>8} {'cache MiB':>10} {'RSS MiB':>8}")
    for g, n, mb, rss in rows:
        print(f"    {g:>10} {n:>8} {mb:>10.2f} {rss:>8.0f}")
    after = [r for r in rows if r[0] >= 2 * full_at] or rows[-1:]
    per_entry = 2**20 * rows[-1][2] / max(1, rows[-1][1])
    px = s.__dict__.get("_pxc")
    table = "" if px is None else (f"; native table {len(px)} entries, "
                                   f"{px.nbytes() / 2**20:.2f} MiB of arrays")
    print(f"    entries never above {worst_entries} ({'ok' if worst_entries <= max_entries else 'MISSED'}"
          f": within max_entries), {s.stats.evictions} evictions, {per_entry:.0f} B/entry "
          f"estimated; RSS from generation {after[0][0]} to {after[-1][0]}: "
          f"{after[-1][3] - after[0][3]:+.1f} MiB{table}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pop", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    reps, pop, gens = (2, 300, 40) if args.quick else (args.repeats, args.pop, 200)
    X, y = data(args.rows)
    # the interpreter, the packer and the native prefix table loaded outside timings
    Session(X[:50], y[:50]).score([var(0) * var(1)])
    Session(X[:50], y[:50]).score_prefix([["add", 0, 1]], SYMBOLS)
    rescoring(X, y, pop, reps)
    equivalent_hits(X, y, min(pop, 300 if not args.quick else 60))
    memory(X, y, pop, gens, max_entries=10 * pop, path="prefix")
    mpop = min(pop, 500)
    memory(X, y, mpop, gens, max_entries=10 * mpop, path="expr")


if __name__ == "__main__":
    main()
