"""On-disk cache of SRSD normal forms (SQLite, JSON values), so a ground truth's slow SymPy
pipeline runs once per machine, not once per results table (the reference re-runs it per pair).

Keyed by method, the expression's text, SymPy's version and this pipeline's version.
Location: `$SYMCORE_CACHE`/metrics (default ~/.cache/symcore/metrics); `SYMCORE_CACHE=""`
turns it off.  Only results are stored (no timeouts, no dead workers), as
JSON: a cache file can never run code, and one not owned by this user is not read.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
from pathlib import Path
from typing import Any

__all__ = ["PIPELINE_VERSION", "cache_path", "get_many", "put_many", "clear"]

#: bump when the normal form or tree of a method changes, so older entries are never used
PIPELINE_VERSION = "1"

_LOCK = threading.Lock()
_SCHEMA = ("CREATE TABLE IF NOT EXISTS forms (key TEXT PRIMARY KEY, status TEXT NOT NULL, "
           "form TEXT, tree TEXT, message TEXT NOT NULL DEFAULT '')")


def cache_path() -> Path | None:
    """The SQLite file, or None when the cache is off or its folder is not trusted."""
    env = os.environ.get("SYMCORE_CACHE")
    if env is not None and env.strip() == "":
        return None
    base = (Path(env) if env else Path.home() / ".cache" / "symcore") / "metrics"
    try:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = base.stat()
    except OSError:
        return None
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return None
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return base / "forms.sqlite"


def _version_tag() -> str:
    import sympy
    return f"sympy {sympy.__version__}|pipeline {PIPELINE_VERSION}"


def _key(method: str, text: str, tag: str) -> str:
    return f"{tag}|{method}|{text}"


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(str(path), timeout=30.0)
    con.execute(_SCHEMA)
    return con


def get_many(method: str, texts: list[str]) -> dict[str, tuple[str, str | None, Any, str]]:
    """Cached (status, form, tree as nested lists, message) by text, for the texts found."""
    path = cache_path()
    if path is None or not texts:
        return {}
    tag = _version_tag()
    out: dict[str, tuple[str, str | None, Any, str]] = {}
    try:
        with _LOCK:
            con = _connect(path)
            try:
                keys = {_key(method, t, tag): t for t in texts}
                ks = list(keys)
                for i in range(0, len(ks), 500):
                    chunk = ks[i:i + 500]
                    q = f"SELECT key, status, form, tree, message FROM forms WHERE key IN " \
                        f"({','.join('?' * len(chunk))})"
                    for k, status, form, tree, msg in con.execute(q, chunk):
                        out[keys[k]] = (status, form, json.loads(tree) if tree else None, msg)
            finally:
                con.close()
    except (sqlite3.Error, ValueError, OSError):
        return {}       # a broken or locked cache is a miss, never an error
    return out


def put_many(method: str, rows: list[tuple[str, str, str | None, Any, str]]) -> None:
    """Store (text, status, form, tree, message) rows."""
    path = cache_path()
    if path is None or not rows:
        return
    tag = _version_tag()
    try:
        with _LOCK:
            con = _connect(path)
            try:
                with con:
                    con.executemany(
                        "INSERT OR REPLACE INTO forms VALUES (?, ?, ?, ?, ?)",
                        [(_key(method, t, tag), s, f, json.dumps(tr) if tr is not None else None,
                          m) for t, s, f, tr, m in rows])
            finally:
                con.close()
    except (sqlite3.Error, OSError):
        pass


def clear() -> None:
    """Delete every cached normal form on disk."""
    path = cache_path()
    if path is not None and path.exists():
        try:
            with _LOCK:
                con = _connect(path)
                try:
                    with con:
                        con.execute("DELETE FROM forms")
                finally:
                    con.close()
        except sqlite3.Error:
            pass
