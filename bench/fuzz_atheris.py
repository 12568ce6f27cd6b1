"""Long fuzz runs with atheris (coverage-guided) over the readers, the kernels, the object
cache and its key index; the quick Hypothesis versions live in tests/fuzz/.  Needs the `bench`
extra (atheris).
Run: python bench/fuzz_atheris.py {readers,kernels,cache,index} [-max_total_time=120 ...]
A crash (an untyped exception, a kernel != reference, a damaged cache payload) stops the run
and atheris writes the input to crash-*."""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np


def _readers():
    from symcore.errors import SymcoreError
    from symcore.io.dialects import DIALECTS
    from symcore.io.readers import read
    names = sorted(DIALECTS)

    def one(data: bytes) -> None:
        if not data:
            return
        try:
            read(data[1:].decode("utf-8", "replace"), names[data[0] % len(names)])
        except SymcoreError:
            pass
    return one


def _kernels():
    from symcore.evaluate import evaluate
    from symcore.ir import call, const, var
    from symcore.codegen.eval.kernels import compile as kcompile
    un = ("neg", "square", "cube", "inv", "abs", "sqrt", "sign", "pinv", "sqrt_abs")
    bi = ("add", "sub", "mul", "div", "max", "min", "fmax", "fmin", "pdiv", "aq", "pow", "powi")

    def build(buf: bytes):
        # a prefix program over the bytes: exact ops only (bit-identical per the semantics
        # table); pow/powi get a small integer exponent
        stack = []
        for c in buf:
            if c < 64 or len(stack) == 0:
                stack.append(var(c % 2) if c % 3 else const(float(c % 7 - 3)))
            elif c < 160 or len(stack) == 1:
                stack.append(call(un[c % len(un)], stack.pop()))
            else:
                op = bi[c % len(bi)]
                b, a = stack.pop(), stack.pop()
                stack.append(call(op, a, const(float(c % 9 - 4))) if op in ("pow", "powi")
                             else call(op, a, b))
        return stack[-1] if stack else None

    def one(data: bytes) -> None:
        if len(data) < 17:
            return
        n = min(16, (len(data) - 1) // 16)
        X = np.frombuffer(data[1:1 + 16 * n], dtype=np.float64).reshape(n, 2)
        e = build(data[1 + 16 * n:][:24])
        if e is None:
            return
        ref = evaluate(e, X)
        for tier in (0, 1):
            got = kcompile([e], tier=tier).predict(X)[0]
            same = (ref.view(np.int64) == got.view(np.int64)) | (np.isnan(ref) & np.isnan(got))
            if not same.all():
                raise AssertionError(f"tier {tier}: {e} differs from the reference on "
                                     f"{X[~same][:2]}: {ref[~same][:2]} vs {got[~same][:2]}")
    return one


def _damage(p: "os.PathLike[str]", data: bytes) -> None:
    """Damage file p as the fuzz input says: flip bytes at the positions it names (odd first
    byte), or replace the file by the rest of it."""
    with open(p, "rb") as f:
        raw = bytearray(f.read())
    if data and data[0] % 2 and len(data) > 3 and raw:
        for i in range(1, len(data) - 1, 2):
            raw[(data[i] << 8 | data[i + 1]) % len(raw)] ^= data[i] | 1
    else:
        raw = bytearray(data[1:])
    with open(p, "wb") as f:
        f.write(raw)


def _cache():
    os.environ["SYMCORE_CACHE"] = tempfile.mkdtemp(prefix="fuzzcache-")
    from symcore.codegen.llvm import cache
    c = cache.ObjectCache()
    payload = bytes(range(256)) * 4
    key = "fuzz|entry"

    def one(data: bytes) -> None:
        c.put(key, payload)
        p = cache.cache_dir() / c._name(key)
        _damage(p, data)
        c.clear_memory()
        got = c.get(key)
        if got is not None and got != payload:
            raise AssertionError("the cache returned a damaged payload")
        if cache.get_or_compile(key, lambda: payload) != payload:
            raise AssertionError("get_or_compile returned a wrong payload")
    return one


def _index():
    os.environ["SYMCORE_CACHE"] = tempfile.mkdtemp(prefix="fuzzindex-")
    os.environ["SYMCORE_CACHE_MAX_MB"] = "1"          # a 64 KB key index
    from symcore.codegen.llvm import cache
    from symcore.codegen.llvm.disk_usage import INDEX
    c = cache.ObjectCache()
    want = {f"fuzz|{i}": bytes([i]) * 16 for i in range(8)}
    pairs = list(want.items())

    def one(data: bytes) -> None:
        c.index_put(pairs)
        p = cache.cache_dir() / INDEX
        _damage(p, data)
        got = c.index_get(list(want))
        if any(want[k] != v for k, v in got.items()):
            raise AssertionError("the key index returned another entry's value")
        c.index_put(pairs)
        if c.index_get(list(want)) != want:
            raise AssertionError("entries put again were not found")
    return one


TARGETS = {"readers": _readers, "kernels": _kernels, "cache": _cache, "index": _index}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options]")
    import atheris
    target = sys.argv.pop(1)
    with atheris.instrument_imports():
        import symcore  # noqa: F401 - instrumented for coverage
    fn = TARGETS[target]()
    atheris.Setup(sys.argv, fn)
    with np.errstate(all="ignore"):
        atheris.Fuzz()


if __name__ == "__main__":
    main()
