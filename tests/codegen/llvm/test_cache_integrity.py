"""A damaged, foreign or oversized object cache never crashes, never lies: every kind of cache
file symcore writes (entries and the key index) is damaged on disk, then a fresh process (no
in-memory cache to hide the damage) compiles and scores against the NumPy reference, and the
file is rewritten."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from symcore.codegen.llvm import cache, disk_usage, index_store

_SCRIPT = r"""
import sys
import numpy as np
import symcore
from symcore import call, const, param, var
from symcore.codegen.grad.data import prepare_data
from symcore.codegen.grad.reference import jacobian_reference
from symcore.codegen.grad.tier0 import Tier0Grad
from symcore.codegen.grad.tier1 import jacobian

x0, x1 = var(0), var(1)
es = [call("add", call("sin", call("mul", x0, const(1.5))), call("exp", x1)),
      call("log_abs", call("sub", x0, call("powi", x1, const(3.0)))),
      call("div", call("cos", x0), call("add", call("square", x1), const(0.5)))]
X = np.random.default_rng(0).normal(size=(53, 2))
y = np.sin(X[:, 0]) + X[:, 1]
for tier in (0, 1):
    k = symcore.compile(es, tier=tier)
    P = k.predict(X)
    for e, row in zip(es, P):
        np.testing.assert_allclose(row, symcore.evaluate(e, X), rtol=1e-12, atol=1e-300)
    mse = k.score(X, y)
    ref = [np.mean((symcore.evaluate(e, X) - y) ** 2) for e in es]
    np.testing.assert_allclose(mse, ref, rtol=1e-10)
    st = k.compile_stats
e4 = call("tanh", call("sub", x1, call("cube", x0)))     # a tier-1 object of its own
k4 = symcore.compile([e4], tier=1)
np.testing.assert_allclose(k4.predict(X)[0], symcore.evaluate(e4, X), rtol=1e-12)
print("T1", st.cached + k4.compile_stats.cached, st.compiled + k4.compile_stats.compiled)
m = call("add", call("mul", param(0), call("exp", call("mul", param(1), x0))), param(2))
p = np.array([0.7, -0.3, 0.2])
pred, J = jacobian(m, X, p)                        # tier-1 Jacobian kernels
pr, Jr = jacobian_reference(m, X, p)
np.testing.assert_allclose(pred, pr, rtol=1e-12)
np.testing.assert_allclose(J, Jr, rtol=1e-11, atol=1e-14)
g0 = Tier0Grad([m])                                # tier-0 Jacobian + native LM library
f, g, H = g0.normal(0, prepare_data(X, y, None, g0.lanes), p)
r = pr - y
np.testing.assert_allclose(f, r @ r, rtol=1e-11)
np.testing.assert_allclose(g, Jr.T @ r, rtol=1e-10, atol=1e-12)
np.testing.assert_allclose(H, Jr.T @ Jr, rtol=1e-10, atol=1e-12)
fit = symcore.fit(m, X, y, tier=0)
assert np.isfinite(fit.loss)
print("RESULTS-OK")
"""

KINDS = {"tier0|": "tier-0 interpreter", "obj|": "tier-1 kernels",
         "t1drv|": "tier-1 driver", "t1helpers|": "tier-1 helpers",
         "grad-tier0|": "tier-0 Jacobian/LM library"}


def _run(base: Path, **env: str) -> subprocess.CompletedProcess:
    e = {**os.environ, "SYMCORE_CACHE": str(base), "SYMCORE_THREADS": "1", **env}
    r = subprocess.run([sys.executable, "-c", _SCRIPT], env=e, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and "RESULTS-OK" in r.stdout, r.stderr[-3000:]
    return r


def _tier1_stats(r: subprocess.CompletedProcess) -> tuple[int, int]:
    """(tier-1 kernels found through the cache, compiled) in a run of the script."""
    cached, compiled = r.stdout.split("T1 ", 1)[1].split()[:2]
    return int(cached), int(compiled)


def _index_entries(f: Path) -> dict[bytes, bytes]:
    """The valid entries of a key index file: {key digest: value}."""
    data = f.read_bytes()
    magic, buckets, ways, ident, _ = index_store._HEAD.unpack_from(data)
    assert magic == index_store._MAGIC and ways == index_store.WAYS
    assert len(data) == index_store.HEADER + buckets * ways * index_store.SLOT
    out = {}
    for off in range(index_store.HEADER, len(data), index_store.SLOT):
        h, v, _, check = index_store._SLOT.unpack_from(data, off)
        body = data[off:off + index_store.SLOT - 8]
        if any(body) and check == hashlib.blake2b(body, digest_size=8, key=ident).digest():
            out[h] = v
    return out


def _rekeyed(data: bytes, ident: bytes) -> bytes:
    """The same table, every checksum made for identity `ident`."""
    buckets = index_store._HEAD.unpack_from(data)[1]
    out = bytearray(data)
    out[:index_store._HEAD.size] = index_store._head(buckets, ident)
    for off in _used_slots(data):
        body = data[off:off + index_store.SLOT - 8]
        out[off + index_store.SLOT - 8:off + index_store.SLOT] = hashlib.blake2b(
            body, digest_size=8, key=ident).digest()
    return bytes(out)


def _used_slots(data: bytes) -> list[int]:
    return [off for off in range(index_store.HEADER, len(data), index_store.SLOT)
            if any(data[off:off + index_store.SLOT])]


def _key_of(data: bytes) -> str:
    _, n_ident, _, _ = cache._HEAD.unpack_from(data)
    ident = data[cache._HEAD.size:cache._HEAD.size + n_ident].decode()
    return ident.split(f"|codegen {cache.CODEGEN_VERSION}|", 1)[1]


def _kind(key: str) -> str:
    for prefix, kind in KINDS.items():
        if key.startswith(prefix):
            return kind
    assert len(key) == 32 and int(key, 16) >= 0, key
    return "tier-1 Jacobian kernels"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, dict[str, tuple[str, str]]]:
    """A cache filled by one run: {file name: (key, kind)}."""
    base = tmp_path_factory.mktemp("pristine")
    os.chmod(base, 0o700)
    _run(base)
    (d,) = [p for p in base.iterdir() if p.is_dir()]
    files = {f.name: (_key_of(f.read_bytes()), "") for f in d.glob("*.o")}
    files = {n: (k, _kind(k)) for n, (k, _) in files.items()}
    kinds = {k for _, k in files.values()}
    need = {"tier-0 interpreter", "tier-1 kernels", "tier-1 driver",
            "tier-0 Jacobian/LM library", "tier-1 Jacobian kernels"}
    assert need <= kinds, kinds
    assert len(_index_entries(d / disk_usage.INDEX)) == 4      # es and e4
    assert _tier1_stats(_run(base)) == (4, 0)     # a new process finds them through it
    return base, files


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    os.chmod(dst, 0o700)
    (d,) = [p for p in dst.iterdir() if p.is_dir()]
    return d


def _damage_index(f: Path, how: str) -> None:
    data = bytearray(f.read_bytes())
    slots = _used_slots(bytes(data))
    if how == "flip-payload":                       # one bit of every entry's value
        for off in slots:
            data[off + 20] ^= 0x04
    elif how == "flip-header":
        data[index_store._HEAD.size - 3] ^= 0x01
    elif how == "truncate":
        data = data[:len(data) // 2]
    elif how == "garbage":
        data = bytearray(os.urandom(len(data)))
    elif how == "foreign":                          # another machine's valid table
        data = bytearray(_rekeyed(bytes(data), b"another machine!"))
    elif how == "empty":
        data = bytearray()
    elif how == "directory":
        f.unlink()
        f.mkdir()
        return
    else:
        raise AssertionError(how)
    f.write_bytes(bytes(data))


def _damage(f: Path, how: str) -> None:
    if f.name == disk_usage.INDEX:
        return _damage_index(f, how)
    data = bytearray(f.read_bytes())
    if how == "flip-payload":
        data[len(data) - max(1, (len(data) - cache._HEAD.size) // 3)] ^= 0x10
    elif how == "flip-header":
        data[cache._HEAD.size - 5] ^= 0x01       # inside the checksum
    elif how == "truncate":
        data = data[:len(data) // 2]
    elif how == "garbage":
        data = bytearray(os.urandom(len(data)))
    elif how == "foreign":                          # another key's (valid) entry in its place
        data = bytearray(cache.encode("not-this-key", bytes(data[cache._HEAD.size:])))
    elif how == "empty":
        data = bytearray()
    f.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flip-payload", "flip-header", "truncate", "garbage",
                                 "foreign", "empty"])
def test_every_kind_of_damaged_cache_file_is_recompiled(pristine, tmp_path, how):
    base, files = pristine
    d = _copy(base, tmp_path / "c")
    want = _index_entries(d / disk_usage.INDEX)
    for name in [*files, disk_usage.INDEX]:
        _damage(d / name, how)
    damaged = {n: (d / n).read_bytes() for n in files}
    r = _run(tmp_path / "c")
    assert "discarded damaged cache file" in r.stderr
    for name, (key, kind) in files.items():
        now = (d / name).read_bytes()
        payload, why = cache.decode(key, now)
        assert now != damaged[name] and payload is not None, f"{kind} file not rewritten ({why})"
    assert _tier1_stats(r) == (0, 4)
    assert _index_entries(d / disk_usage.INDEX) == want     # the index is whole again


def _lie(f: Path, checksums: bool = True) -> None:
    """Every index entry names another tier-1 object, with valid checksums (as if written
    wrong) or not (damage that happens to name a real object)."""
    data = bytearray(f.read_bytes())
    ident = index_store._HEAD.unpack_from(data)[3]
    slots = _used_slots(bytes(data))
    values = [bytes(data[o + 16:o + 32]) for o in slots]
    assert len(set(values)) == 2                     # es in one object, e4 in another
    for off in slots:
        v = bytes(data[off + 16:off + 32])
        other = next(w for w in values if w != v)
        data[off + 16:off + 32] = other
        if not checksums:
            continue
        body = bytes(data[off:off + index_store.SLOT - 8])
        data[off + index_store.SLOT - 8:off + index_store.SLOT] = hashlib.blake2b(
            body, digest_size=8, key=ident).digest()
    f.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flip-payload", "flip-header", "truncate", "garbage",
                                 "foreign", "empty", "directory", "swap", "lie"])
def test_damaged_index_alone_is_rebuilt(pristine, tmp_path, how):
    # the objects are intact: only the index can mislead, and it must not
    base, _ = pristine
    d = _copy(base, tmp_path / "c")
    f = d / disk_usage.INDEX
    want = _index_entries(f)
    if how in ("swap", "lie"):
        _lie(f, checksums=how == "lie")
    else:
        _damage_index(f, how)
    r = _run(tmp_path / "c")
    if how != "lie":                                  # a lie has valid checksums: not seen
        assert "cache index" in r.stderr, r.stderr[-2000:]
    assert _tier1_stats(r) == (0, 4)                   # found through no damaged entry
    assert f.is_file() and _index_entries(f) == want
    again = _tier1_stats(_run(tmp_path / "c"))
    # the next run uses it again (after a lie, the object that failed to load was discarded
    # too, as a verified object that cannot be loaded is: its kernels are compiled once more)
    assert again == ((1, 3) if how == "lie" else (4, 0))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 file anyway")
def test_unreadable_cache_file_is_replaced(pristine, tmp_path):
    base, files = pristine
    d = _copy(base, tmp_path / "c")
    for name in files:
        os.chmod(d / name, 0)
    _run(tmp_path / "c")
    for name, (key, _) in files.items():
        assert cache.decode(key, (d / name).read_bytes())[0] is not None


@pytest.mark.parametrize("how", ["group-writable", "other-owner"])
def test_untrusted_cache_directory_is_never_loaded(pristine, tmp_path, how):
    base, files = pristine
    d = _copy(base, tmp_path / "c")
    for name in [*files, disk_usage.INDEX]:
        _damage(d / name, "garbage")   # loading any of these would show (and rewrite it)
    before = {n: (d / n).read_bytes() for n in [*files, disk_usage.INDEX]}
    if how == "group-writable":
        os.chmod(d, 0o777)
    else:
        if os.geteuid() != 0:
            pytest.skip("chown needs root")
        os.chown(d, 65534, 65534)
    r = _run(tmp_path / "c")
    assert "not using the object cache" in r.stderr
    assert "discarded" not in r.stderr
    assert {n: (d / n).read_bytes() for n in before} == before   # never read, never written


def test_untrusted_index_file_is_never_read(pristine, tmp_path):
    base, _ = pristine
    d = _copy(base, tmp_path / "c")
    os.chmod(d / disk_usage.INDEX, 0o664)     # group-writable: its entries could be anyone's
    r = _run(tmp_path / "c")
    assert "discarded the cache index" in r.stderr and "writable by group" in r.stderr
    assert _tier1_stats(r) == (0, 4)          # nothing found through it
    assert (d / disk_usage.INDEX).stat().st_mode & 0o077 == 0    # made anew, ours


def test_disk_cap_holds_by_blocks_on_every_write(tmp_path):
    # many small entries (index files take a whole block each): the cap counts blocks
    cap_mb = 0.25
    script = r"""
import numpy as np, symcore
from symcore import call, const, var
from symcore.codegen.llvm import cache
X = np.random.default_rng(0).normal(size=(20, 2))
d = cache.cache_dir()
peak = 0
for i in range(12):
    es = [call("powi", call(op, var(j % 2)), const(float(4 + i * 10 + j)))
          for j, op in enumerate(["sin", "exp", "cos", "tanh", "sqrt_abs"] * 3)]
    symcore.compile(es, tier=1).predict(X)
    used = sum(f.stat().st_blocks * 512 for f in d.iterdir())
    peak = max(peak, used)
print("PEAK", peak)
"""
    env = {**os.environ, "SYMCORE_CACHE": str(tmp_path / "c"), "SYMCORE_CACHE_MAX_MB": str(cap_mb)}
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    peak = int(r.stdout.split("PEAK")[1])
    assert 0 < peak <= cap_mb * (1 << 20)
