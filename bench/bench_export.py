"""Question: how fast does an exported model run without symcore, against symcore's own kernels
and the NumPy reference?  Model: the bundled example's answer (AI Feynman I.6.2); rows 1e4, 1e6.

Prints the median seconds per call and rows/s of: exported .so (generic and host CPU), the
exported C file compiled with `cc -O2` and `cc -O3 -march=native`, the exported NumPy file,
`symcore.compile(...).predict` (tier 1 and tier 0) and `symcore.evaluate`; ratios to NumPy.
Also the time each export takes.  Run: python bench/bench_export.py
"""

from __future__ import annotations

import ctypes
import importlib.util
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import symcore
from symcore.codegen.export.api import find_compiler
from symcore.app.example import true_expr

SEED = 0
REPEATS = 7


def median_time(fn, repeats: int = REPEATS) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def load_batch(lib: Path, name: str):
    dll = ctypes.CDLL(str(lib))
    f = getattr(dll, f"{name}_batch")
    dp = ctypes.POINTER(ctypes.c_double)
    f.argtypes = [dp, ctypes.c_size_t, ctypes.c_size_t, dp]
    f.restype = None
    return dll, f


def main() -> None:
    e = true_expr()
    cc = find_compiler()
    rng = np.random.default_rng(SEED)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        export_times = {}
        for fmt, fname, kw in (("so", "gen.so", {"cpu": "generic"}), ("so", "host.so",
                                                                     {"cpu": "host"}),
                               ("c", "m.c", {}), ("ll", "m.ll", {}), ("py", "m.py", {}),
                               ("json", "m.json", {}), ("latex", "m.tex", {})):
            t = time.perf_counter()
            symcore.export(e, d / fname, format=fmt, name="m", **kw)
            export_times[f"{fmt} {kw.get('cpu', '')}".strip()] = time.perf_counter() - t
        for flags, out in ((["-O2"], "c_o2.so"), (["-O3", "-march=native"], "c_o3.so")):
            subprocess.run([cc, "-std=c99", *flags, "-fPIC", "-shared", "-o", str(d / out),
                            str(d / "m.c"), "-lm"], check=True)
        spec = importlib.util.spec_from_file_location("m_py", d / "m.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        libs = {name: load_batch(d / f, "m") for name, f in (
            ("export .so (generic)", "gen.so"), ("export .so (host)", "host.so"),
            ("export .c  cc -O2", "c_o2.so"), ("export .c  cc -O3 -march=native", "c_o3.so"))}
        k1 = symcore.compile(e, tier=1)
        k0 = symcore.compile(e, tier=0)

        print("export time per format (s):")
        for k, v in export_times.items():
            print(f"  {k:<12} {v:8.4f}")
        for n in (10_000, 1_000_000):
            X = np.ascontiguousarray(rng.uniform(1, 3, (n, 2)))
            out = np.empty(n)
            dp = ctypes.POINTER(ctypes.c_double)
            xp, op = X.ctypes.data_as(dp), out.ctypes.data_as(dp)
            ref = symcore.evaluate(e, X)
            rows = {}
            for name, (_, f) in libs.items():
                rows[name] = median_time(lambda f=f: f(xp, n, 2, op))
                assert np.allclose(out, ref, rtol=1e-12)
            rows["export .py (NumPy)"] = median_time(lambda: mod.m(X))
            rows["symcore.compile tier 1"] = median_time(lambda: k1.predict(X))
            rows["symcore.compile tier 0"] = median_time(lambda: k0.predict(X))
            rows["symcore.evaluate (NumPy)"] = median_time(lambda: symcore.evaluate(e, X))
            base = rows["symcore.evaluate (NumPy)"]
            print(f"\nN = {n:,} rows, one model (I.6.2), median of {REPEATS}:")
            print(f"  {'evaluator':<34} {'seconds':>10} {'Mrows/s':>9} {'vs NumPy':>9}")
            for name, t in rows.items():
                print(f"  {name:<34} {t:10.6f} {n / t / 1e6:9.1f} {base / t:8.2f}x")
        for dll, _ in libs.values():
            del dll


if __name__ == "__main__":
    main()
