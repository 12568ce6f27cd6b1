"""IR optimisation (`jit.optimise`, LLVM's default pipeline) as it was ("old": llvmlite's pass
manager never freed) and as it is ("new"), for the callers that optimise per model: tier-1
Jacobian kernels (and the LM fit over them), ODE right-hand sides, exported .so models.

    python bench/bench_llvm_opt.py [--compiles 400] [--repeats 5]

(1) RSS growth per compile, each (caller, variant) in a fresh process (plus "hand": a hand-built
pass list run the way a previous session measured it); (2) run time of the compiled code;
(3) compile time.  Times: both variants in this process, interleaved repeats, medians, new/old
ratios; object code compared byte for byte.  The machine load is printed at start and end.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

os.environ["SYMCORE_CACHE"] = ""   # memory only: every build below really compiles

import llvmlite.binding as llvm  # noqa: E402
import numpy as np  # noqa: E402

import symcore  # noqa: E402
from symcore.codegen.export.system import rhs_function  # noqa: E402
from symcore.codegen.grad.data import prepare_data  # noqa: E402
from symcore.codegen.grad.tier1 import GradKernels  # noqa: E402
from symcore.codegen.llvm import cache, jit  # noqa: E402
from symcore.codegen.ode import native as ode_native  # noqa: E402
from symcore.params import lift_constants  # noqa: E402

#: Feynman I.6.20 (SRSD ground truth): the model of the Jacobian, fit and export rows
FEYNMAN = "sqrt(2)*exp(-x0**2/(2*x1**2))/(2*sqrt(pi)*x1)"
LORENZ = ["10.0 * (x1 - x0)", "x0 * (28.0 - x2) - x1", "x0 * x1 - 2.6667 * x2"]
ROWS = 10_000
#: a timing loop runs at least this long (seconds)
MIN_TIME = 0.2
_new_optimise = jit.optimise


def old_optimise(mod: Any, level: int, tm: Any = None) -> None:
    """`jit.optimise` before this change: the pass manager is never freed."""
    if level <= 0:
        return
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pb = llvm.create_pass_builder(tm or jit.target_machine(), pto)
    pm = pb.getModulePassManager()
    pm.run(mod, pb)


def hand_optimise(mod: Any, level: int, tm: Any = None) -> None:
    """A hand-built pass list, not freed (what a previous session measured as leak-free)."""
    if level <= 0:
        return
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pb = llvm.create_pass_builder(tm or jit.target_machine(), pto)
    pm = llvm.create_new_module_pass_manager()
    for add in ("sroa", "instruction_combine", "simplify_cfg", "reassociate", "new_gvn",
                "loop_simplify", "loop_rotate", "lcssa", "loop_unroll", "instruction_combine",
                "aggressive_dce", "simplify_cfg"):
        getattr(pm, f"add_{add}_pass")()
    pm.run(mod, pb)


VARIANTS: dict[str, Callable[..., None]] = {"old": old_optimise, "new": _new_optimise,
                                           "hand": hand_optimise}


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    jit.optimise = VARIANTS[name]     # emit_object looks it up at call time
    try:
        yield
    finally:
        jit.optimise = _new_optimise


def _fresh() -> None:
    cache.object_cache().clear_memory()
    ode_native._lru.clear()


# -- the callers: each builds its code through the real API and returns what to time ---------

def _feynman() -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    truth = symcore.read(FEYNMAN, "sympy")
    X = np.ascontiguousarray(rng.uniform(0.5, 3.0, (ROWS, 2)))
    y = symcore.evaluate(truth, X)
    model, p = lift_constants(truth)
    return model, np.asarray(p, dtype=float), X, y


def build_jacobian() -> Callable[[], Any]:
    model, p, X, _ = _feynman()
    k = GradKernels([model], jacobian=True)
    data = prepare_data(X, lanes=k.lanes)
    return lambda: k.jacobian(0, data, p)


def build_fit() -> Callable[[], Any]:
    model, p, X, y = _feynman()
    start = p * 1.1
    run = lambda: symcore.fit(model, X, y, start, method="lm", tier=1)  # noqa: E731
    run()    # compiles; later calls load the cached object
    return run


def build_ode() -> Callable[[], Any]:
    f = rhs_function(symcore.system(LORENZ))
    Y = np.ascontiguousarray(np.random.default_rng(1).normal(size=(3, ROWS)))
    return lambda: f(0.0, Y)


_tmp = Path(tempfile.mkdtemp(prefix="bench_llvm_opt_"))
atexit.register(shutil.rmtree, _tmp, True)
_libs: list[Any] = []


def build_export() -> Callable[[], Any]:
    model = symcore.read(FEYNMAN, "sympy")
    path = _tmp / f"m{len(_libs)}.so"     # a new file each time: dlopen reuses a loaded path
    symcore.export(model, path, format="so", name="m")
    dll = ctypes.CDLL(str(path))
    _libs.append(dll)
    f = dll.m_batch
    dp = ctypes.POINTER(ctypes.c_double)
    f.argtypes = [dp, ctypes.c_size_t, ctypes.c_size_t, dp]
    f.restype = None
    X = np.ascontiguousarray(np.random.default_rng(2).uniform(0.5, 3.0, (ROWS, 2)))
    out = np.empty(ROWS)
    xp, op = X.ctypes.data_as(dp), out.ctypes.data_as(dp)
    return lambda: f(xp, ROWS, 2, op)


CALLERS: dict[str, Callable[[], Callable[[], Any]]] = {
    "grad tier-1 Jacobian, 10k rows": build_jacobian,
    "LM fit (tier 1), 10k rows": build_fit,
    "ODE RHS (Lorenz), 10k states": build_ode,
    "export .so predict, 10k rows": build_export,
}
#: which callers' compiles the compile-time and RSS tables use (the fit compiles the same
#: Jacobian module as the first row)
COMPILERS = ("grad tier-1 Jacobian, 10k rows", "ODE RHS (Lorenz), 10k states",
             "export .so predict, 10k rows")


def capture(caller: str) -> list[tuple[str, Any, int, str | None]]:
    """The (IR text, target machine, opt_ir, triple) of every optimised compile the caller
    makes (through jit.emit_object)."""
    seen: list[tuple[str, Any, int, str | None]] = []
    real = jit.emit_object

    def rec(text: str, tm: Any, opt_ir: int, triple: str | None = None) -> bytes:
        if opt_ir > 0:
            seen.append((text, tm, opt_ir, triple))
        return real(text, tm, opt_ir, triple)
    _fresh()
    jit.emit_object = rec
    try:
        CALLERS[caller]()
    finally:
        jit.emit_object = real
    if not seen:
        raise RuntimeError(f"{caller}: no optimised compile seen")
    return seen


def compile_all(items: list[tuple[str, Any, int, str | None]]) -> list[bytes]:
    return [jit.emit_object(text, tm, opt, triple) for text, tm, opt, triple in items]


def per_call(fn: Callable[[], Any]) -> float:
    k, t0 = 0, time.perf_counter()
    while True:
        fn()
        k += 1
        dt = time.perf_counter() - t0
        if dt >= MIN_TIME:
            return dt / k


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_child(caller: str, name: str, n: int) -> None:
    items = capture(caller)
    with variant(name):
        for _ in range(max(n // 10, 20)):
            compile_all(items)
        r0 = rss_bytes()
        for _ in range(n):
            compile_all(items)
        print((rss_bytes() - r0) / n)


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--compiles", type=int, default=400, help="compiles per RSS measurement")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rss-child", nargs=3, metavar=("CALLER", "VARIANT", "N"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.rss_child:
        rss_child(a.rss_child[0], a.rss_child[1], int(a.rss_child[2]))
        return
    print(f"llvmlite {llvm.llvm_version_info} | {load()} at start")

    print(f"\n(1) RSS growth per compile (KB), {a.compiles} compiles after a warm-up, "
          f"one fresh process each:")
    print(f"  {'caller':<34} {'modules':>7} {'old':>8} {'new':>8} {'hand':>8}")
    for caller in COMPILERS:
        row = {}
        for name in ("old", "new", "hand"):
            out = subprocess.run([sys.executable, __file__, "--rss-child", caller, name,
                                  str(a.compiles)], capture_output=True, text=True, check=True)
            row[name] = float(out.stdout.split()[-1]) / 1e3
        mods = len(capture(caller))
        print(f"  {caller:<34} {mods:7d} {row['old']:8.1f} {row['new']:8.1f} "
              f"{row['hand']:8.1f}")

    print("\n(2) object code old vs new (bytes):")
    captured = {c: capture(c) for c in COMPILERS}
    for caller, items in captured.items():
        with variant("old"):
            old = compile_all(items)
        with variant("new"):
            new = compile_all(items)
        print(f"  {caller:<34} {'identical' if old == new else 'DIFFERENT'} "
              f"({sum(map(len, new))} bytes)")

    print(f"\n(3) compile time per module (ms), median of {a.repeats} interleaved repeats:")
    print(f"  {'caller':<34} {'old':>8} {'new':>8} {'new/old':>8}")
    for caller, items in captured.items():
        t: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(a.repeats):
            for name in t:
                with variant(name):
                    t0 = time.perf_counter()
                    for _ in range(5):
                        compile_all(items)
                    t[name].append((time.perf_counter() - t0) / (5 * len(items)))
        o, n = statistics.median(t["old"]), statistics.median(t["new"])
        print(f"  {caller:<34} {o * 1e3:8.2f} {n * 1e3:8.2f} {n / o:8.3f}")

    print(f"\n(4) run time of the compiled code (ms per call), median of {a.repeats} "
          f"interleaved repeats (each built afresh under its variant):")
    print(f"  {'caller':<34} {'old':>8} {'new':>8} {'new/old':>8}")
    for caller, build in CALLERS.items():
        t = {"old": [], "new": []}
        for _ in range(a.repeats):
            for name in t:
                _fresh()
                with variant(name):
                    fn = build()
                t[name].append(per_call(fn))
        o, n = statistics.median(t["old"]), statistics.median(t["new"])
        print(f"  {caller:<34} {o * 1e3:8.3f} {n * 1e3:8.3f} {n / o:8.3f}")
    print(f"\n{load()} at end")


if __name__ == "__main__":
    main()
