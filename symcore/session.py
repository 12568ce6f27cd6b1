"""Session: one search over one data set — scores whole populations through the tier-0
interpreter (zero compilation) with a fitness cache that spans generations.

A search frontend keeps one `Session` for its whole run and hands it each generation:
``losses = session.score(candidates)``.  Candidates already seen (reproduction, duplicates,
unchanged mutants) are answered from an LRU cache keyed by their canonical form.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

from symcore.errors import DataError, SymcoreError
from symcore.evaluate import as_matrix, as_rows
from symcore.ir import Expr
from symcore.session_stats import SessionStats, entry_bytes
from symcore.scoring import candidate_weights
from symcore.session_metrics import SessionMetrics
from symcore.session_prefix import PrefixScoring, is_slot_key

__all__ = ["Session", "SessionStats", "METRICS", "GREATER_IS_BETTER"]

#: prefix programs are cut into one part per thread from this many tokens x rows on (below,
#: one thread: the interpreter's share of the time is too small to win back the handoff)
_PARALLEL_WORK = 1e8
#: scratch of one shared tape at most (slots x block x itemsize); a population needing more
#: is packed in halves
_SCRATCH_BYTES = 1 << 25
Metric = Literal["mse", "rmse", "mae", "nmse", "r2", "pearson", "spearman"]
CacheMode = Literal["exact", "equivalent"]

METRICS: tuple[str, ...] = ("mse", "rmse", "mae", "nmse", "r2", "pearson", "spearman")
#: metrics where a larger value is a better fit (the others are losses)
GREATER_IS_BETTER = frozenset({"r2", "pearson", "spearman"})


def _canonical_all() -> Any:
    from symcore.rules.canonical import canonical_all
    return canonical_all


def _expanded_keys() -> Any:
    from symcore.rules.canonical_expand import expanded_keys
    return expanded_keys


class Session(PrefixScoring, SessionMetrics):
    """One search over data ``X`` (rows x columns), target ``y``.

    metric: mse rmse mae nmse r2 pearson spearman (r2, pearson, spearman: higher is better;
    pearson is the signed weighted correlation of prediction and y, spearman that of their
    ranks).  weights: the session's row weights (non-negative, finite).  dtype: float64 or
    float32 (data and arithmetic; reductions in float64).  cache: "exact" (keys up to
    value-preserving rewrites, so a hit is bit-for-bit what scoring gives), "equivalent" (keys
    on the canonical class, expanded so that SymPy-style rewrites — expand, together/apart,
    exp(a+b) = exp(a)*exp(b) — meet: values equal wherever both are finite, up to rounding;
    the first member seen is scored) or None.  max_entries bounds the LRU cache.
    nonfinite: the value of a candidate whose prediction is non-finite on some row, or whose
    metric is undefined: "inf" (the worst: +inf for losses, -inf for
    higher-is-better metrics), "nan", or a number.

    Larger than memory: X may be a Dask array or DataFrame (then y a Dask array/Series or a
    column name, `columns` the feature columns in variable order); the misses of each call are
    scored on the cluster by `symcore.dask.score` (metrics mse rmse mae nmse r2 pearson), the
    cache works as in memory, and `predict` returns a lazy Dask array.
    """

    def __init__(self, X: Any, y: Any, *, metric: Metric = "mse", weights: Any = None,
                 dtype: Literal["float64", "float32"] = "float64",
                 cache: CacheMode | None = "exact", max_entries: int = 1_000_000,
                 nonfinite: Literal["nan", "inf"] | float = "inf",
                 columns: Sequence[str] | None = None) -> None:
        if metric not in METRICS:
            raise DataError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
        if dtype not in ("float64", "float32"):
            raise DataError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
        if cache not in ("exact", "equivalent", None):
            raise SymcoreError(f"cache must be 'exact', 'equivalent' or None, got {cache!r}")
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 0:
            raise SymcoreError(f"max_entries must be a non-negative int, got {max_entries!r}")
        self.metric: str = metric
        self.greater_is_better = metric in GREATER_IS_BETTER
        self.dtype = dtype
        self._np = np.dtype(dtype)
        self.cache_mode = cache
        self.max_entries = max_entries
        self._nonfinite = self._policy(nonfinite)
        self._cache: OrderedDict[Any, float] = OrderedDict()
        # id(expr) -> (weakref, canonical form, cache key); None: the expression itself
        self._canon: dict[int, tuple[Any, Expr | None, Any]] = {}
        self._ranked_y: np.ndarray | None = None
        self.stats = SessionStats()
        self._dask: tuple[Any, Any, Any, Sequence[str] | None] | None = None
        if _is_dask(X):
            if metric == "spearman":
                raise DataError("spearman needs global ranks: not available on Dask data")
            if dtype != "float64":
                raise DataError("a Session over Dask data computes in float64")
            self._dask = (X, y, weights, columns)
            self.n_rows = int(X.shape[0].compute() if hasattr(X.shape[0], "compute")
                              else X.shape[0])
            self.n_features = len(columns) if columns is not None else (
                X.shape[1] if X.ndim == 2 else 1) if not hasattr(X, "columns") else \
                len(X.columns) - (1 if isinstance(y, str) else 0)
            return
        A = as_matrix(X, (), self._np)
        N = A.shape[0]
        if N == 0:
            raise DataError("cannot score on zero rows")
        self.n_rows, self.n_features = N, A.shape[1]
        # column-major, one contiguous row per feature (the interpreter's layout); at least one
        self._Xcol = np.ascontiguousarray(A.T) if A.shape[1] else np.zeros((1, N), self._np)
        self._y = self._vector(y, "y")                      # float64, rounded to dtype
        self._w = None if weights is None else self._weight_vector(weights, "weights")
        self._yd = self._y.astype(self._np)
        self._wd = None if self._w is None else self._w.astype(self._np)
        self._sw = float(N) if self._w is None else float(self._w.sum())

    # -- checks -------------------------------------------------------------------------------
    def _vector(self, v: Any, name: str) -> np.ndarray:
        return as_rows(v, self.n_rows, name, self._np)

    def _weight_vector(self, v: Any, name: str) -> np.ndarray:
        w = self._vector(v, name)
        if np.any(w < 0):
            raise DataError(f"{name} must be non-negative")
        if not w.sum() > 0:
            raise DataError(f"{name} sum to zero")
        return w

    # -- public API ---------------------------------------------------------------------------
    def score(self, candidates: Sequence[Expr | str] | Expr | str, *,
              weights: Any = None, dialect: str | None = None) -> np.ndarray:
        """The metric of every candidate, a float64 array in input order.

        candidates: `Expr`s, or strings read with `dialect` (default: detected).  weights:
        per-candidate rows instead of the session's weights — a (P, N) array of weights, or
        a sequence of P row-index arrays (the session's weights on those rows, a repeated
        index counting again, as a bootstrap sample); such a candidate hits the cache only
        for the identical expression with identical weights."""
        st = self.stats
        t0 = time.perf_counter()
        exprs = self._exprs(candidates, dialect)
        t1 = time.perf_counter()
        st.seconds["read"] += t1 - t0
        P = len(exprs)
        wkeys, wrows = self._candidate_weights(weights, P)
        keys, scored = self._keys(exprs)
        t2 = time.perf_counter()
        st.seconds["canonicalise"] += t2 - t1
        out = np.empty(P, dtype=np.float64)
        cache = self._cache if self.cache_mode is not None else None
        todo: dict[Any, list[int]] = {}
        hits = 0
        for i, k in enumerate(keys):
            if wkeys is not None:
                k = (k, wkeys[i])
            if cache is not None:
                v = cache.get(k)
                if v is not None:
                    cache.move_to_end(k)
                    out[i] = v
                    hits += 1
                    continue
            at = todo.get(k)
            if at is None:
                todo[k] = [i]
            else:
                at.append(i)
                hits += 1
        st.calls += 1
        st.candidates += P
        st.hits += hits
        st.misses += P - hits
        if todo:
            reps = [v[0] for v in todo.values()]
            rep_exprs = [scored[i] for i in reps]
            if wrows is None:
                vals = self._score_fresh(rep_exprs, None)
            else:
                vals = self._score_fresh(rep_exprs, wrows[np.asarray(reps)])
            st.classes += len(todo)
            for (k, idx), v in zip(todo.items(), vals.tolist()):
                out[idx] = v
                if cache is not None:
                    self._insert(k, v)
        st.entries = len(self._cache)
        return out

    def predict(self, candidates: Sequence[Expr | str] | Expr | str, *,
                dialect: str | None = None) -> np.ndarray:
        """Predictions of every candidate on every row: a (P, N) array of the session's dtype
        (not cached)."""
        exprs = self._exprs(candidates, dialect)
        if self._dask is not None:
            from symcore import dask as sd
            X, _, _, columns = self._dask
            return sd.predict(exprs, X if columns is None or not hasattr(X, "columns")
                              else X[list(columns)])
        return self._predict(exprs)

    def clear(self) -> None:
        """Empty the fitness cache (the counters stay)."""
        self._cache.clear()
        self._prefix_cleared()
        self.stats.entries = 0
        self.stats.bytes = 0
        px = self.__dict__.get("_pxc")
        self.stats.table_bytes = px.nbytes() if px is not None else 0

    def __len__(self) -> int:
        return len(self._cache)

    def __repr__(self) -> str:
        return (f"Session({self.n_rows} rows x {self.n_features} features, metric={self.metric}, "
                f"cache={self.cache_mode}, {len(self._cache)} entries)")

    # -- candidates and keys --------------------------------------------------------------------
    def _exprs(self, candidates: Any, dialect: str | None) -> list[Expr]:
        if isinstance(candidates, (Expr, str)):
            candidates = [candidates]
        elif not hasattr(candidates, "__iter__"):
            raise SymcoreError(f"score takes Expr or str candidates, got "
                               f"{type(candidates).__name__}")
        out = list(candidates)
        reader = None
        for i, c in enumerate(out):
            if type(c) is Expr:
                continue
            if isinstance(c, str):
                if reader is None:
                    from symcore.io.readers import read as reader
                out[i] = reader(c, dialect or "auto")
            else:
                raise SymcoreError(f"candidate {i} is not an Expr or str "
                                   f"(got {type(c).__name__})")
        return out

    def _keys(self, exprs: list[Expr]) -> tuple[list[Any], list[Expr]]:
        """Cache key of every candidate and the expression scored for it, memoised per
        expression for as long as the expression lives.  exact: the exact canonical form (an
        interned Expr), scoring the candidate itself; equivalent: the expanded key of the
        canonical form (symcore.rules.canonical_expand: SymPy-style rewrites meet), scoring
        the canonical form."""
        mode = self.cache_mode
        if mode is None:
            return exprs, exprs
        memo = self._canon
        keys: list[Any] = [None] * len(exprs)
        scored: list[Expr] = exprs if mode == "exact" else [None] * len(exprs)  # type: ignore
        todo: list[int] = []
        for i, e in enumerate(exprs):
            hit = memo.get(id(e))
            if hit is not None and hit[0]() is e:
                # None stands for e itself: an entry never holds its own expression alive
                # (else the weakref never fires and the memo grows with every generation)
                keys[i] = e if hit[2] is None else hit[2]
                if mode != "exact":
                    scored[i] = e if hit[1] is None else hit[1]
            else:
                todo.append(i)
        if todo:
            new = list({id(exprs[i]): exprs[i] for i in todo}.values())
            canon = _canonical_all()(new, mode)
            ks: list[Any] = canon if mode == "exact" else _expanded_keys()(canon)
            for e, c, k2 in zip(new, canon, ks):
                k = id(e)
                memo[k] = (weakref.ref(e, lambda _r, k=k, m=memo: m.pop(k, None)),
                           None if c is e else c, None if k2 is e else k2)
            for i in todo:
                e = exprs[i]
                _, c, k2 = memo[id(e)]
                keys[i] = e if k2 is None else k2
                if mode != "exact":
                    scored[i] = e if c is None else c
        return keys, scored

    def _insert(self, k: Any, v: float) -> None:
        if self.max_entries == 0:
            return
        self._cache[k] = v
        self.stats.bytes += entry_bytes(k, v)
        self._evict()

    def _evict(self) -> None:
        cache = self._cache
        gone: list[int] = []
        while len(cache) > self.max_entries:
            old, v = cache.popitem(last=False)
            self.stats.bytes -= entry_bytes(old, v)
            self.stats.evictions += 1
            if is_slot_key(old):
                gone.append(old)
        if gone:
            self._prefix_evicted(gone)

    def _candidate_weights(self, weights: Any, P: int
                           ) -> tuple[list[bytes] | None, np.ndarray | None]:
        """Per-candidate weights as (digest per candidate, (P, N) float64 rows)."""
        if weights is not None:
            self._local("per-candidate weights")
        if weights is None:
            return None, None
        return candidate_weights(weights, P, self.n_rows, self._w, self._np)

    # -- the prefix-token path (codegen side) ------------------------------------------------
    @staticmethod
    def _symbol_table(symbols: Mapping[Any, str]) -> dict[Any, tuple[int, int]]:
        """token -> (opcode, arity), numbered as the tape packer numbers the ops now."""
        from symcore.codegen.eval.prefix import symbol_table
        return symbol_table(symbols)

    @staticmethod
    def _prefix_cache_module() -> Any:
        """codegen.eval.prefix_cache where its native table runs here (else None)."""
        from symcore.codegen.eval import prefix_cache
        return prefix_cache if prefix_cache.available() else None

    def _prefix_parts(self, programs: list[Any], table: dict[Any, tuple[int, int]],
                      pred: np.ndarray | None, acc: np.ndarray | None = None) -> None:
        """Prefix programs packed into shared tapes (codegen.eval.prefix.pack_shared: every
        distinct subtree once) and run: predictions into `pred` (P, N), or (sum w*err**2,
        sum w*|err|) into `acc` (P, 2).  A large population is cut into one contiguous part
        per thread, each packed and run on its own (a part's values do not depend on the
        others, so the results are the same bits for any number of parts)."""
        from symcore.codegen import pool
        from symcore.codegen.eval.dag import BLOCK, DagProgram
        from symcore.codegen.eval.prefix import pack_shared
        P, N = len(programs), self.n_rows
        if not P:
            return
        lens = np.fromiter(map(len, programs), dtype=np.int64, count=P)
        cum = np.cumsum(lens)
        parts = 1 if cum[-1] * N < _PARALLEL_WORK else max(1, min(pool.n_threads(), P))
        bounds = [0, *(int(np.searchsorted(cum, cum[-1] * k // parts)) for k in
                       range(1, parts)), P]
        bounds = sorted(set(bounds))
        X = self._Xcol
        secs = [[0.0, 0.0] for _ in bounds[1:]]

        def run_range(g: int, a: int, b: int) -> None:
            t0 = time.perf_counter()
            tape = pack_shared(programs[a:b], table, self.n_features)
            secs[g][0] += time.perf_counter() - t0
            if b - a > 1 and tape.n_scratch * BLOCK[self.dtype] * self._np.itemsize > \
                    _SCRATCH_BYTES:
                # values kept alive across the population would not fit: halves, each alone
                run_range(g, a, (a + b) // 2)
                run_range(g, (a + b) // 2, b)
                return
            t1 = time.perf_counter()
            prog = DagProgram(tape, self.dtype)
            if acc is not None:
                acc[a:b] = prog.loss(X, self._yd, self._wd)
            else:
                prog.predict(X, pred[a:b])           # type: ignore[index]
            secs[g][1] += time.perf_counter() - t1

        def run(g: int) -> None:
            run_range(g, bounds[g], bounds[g + 1])
        pool.run_ranges(len(bounds) - 1, float(cum[-1]) * N, lambda g0, g1: [
            run(g) for g in range(g0, g1)], threads=len(bounds) - 1)
        self.stats.seconds["compile"] += sum(c for c, _ in secs)
        self.stats.seconds["score"] += sum(s for _, s in secs)

    # -- scoring ----------------------------------------------------------------------------------
    def _program(self, exprs: list[Expr]) -> Any:
        from symcore.codegen.eval.tier0 import Tier0Program
        t = time.perf_counter()
        prog = Tier0Program(exprs, self.dtype)
        if prog.n_params:
            raise DataError("a Session scores candidates without parameter slots; bind "
                            "them first (symcore.bind_params)")
        if prog.n_vars > self.n_features:
            raise DataError(f"the candidates read {prog.n_vars} column(s), X has "
                            f"{self.n_features}")
        self.stats.seconds["compile"] += time.perf_counter() - t
        return prog

    def _score_fresh(self, exprs: list[Expr], W: np.ndarray | None) -> np.ndarray:
        if self._dask is not None:
            return self._score_dask(exprs)
        return self._run(self._program, exprs, W)

    def _score_dask(self, exprs: list[Expr]) -> np.ndarray:
        from symcore import dask as sd
        X, y, weights, columns = self._dask  # type: ignore[misc]
        t = time.perf_counter()
        out = np.asarray(sd.score(exprs, X, y, metric=self.metric,  # type: ignore[arg-type]
                                  weights=weights, columns=columns), dtype=np.float64)
        self.stats.seconds["score"] += time.perf_counter() - t
        return self._policy_apply(out, ~np.isfinite(out))

    def _local(self, what: str) -> None:
        if self._dask is not None:
            raise DataError(f"{what} needs the data in memory; this Session holds Dask data "
                            f"(use score / predict)")

    def _run(self, make: Callable[[list[Any]], Any], items: list[Any],
             W: np.ndarray | None) -> np.ndarray:
        """The metric of every candidate in `items`, packed by `make` into tier-0 programs
        (W: per-candidate weights; see _metric_of)."""
        from symcore.codegen import pool
        P, N = len(items), self.n_rows
        if not P:
            return np.zeros(0)
        X = self._Xcol
        seconds = self.stats.seconds

        def accumulate(acc: np.ndarray) -> None:
            prog = make(items)
            t = time.perf_counter()
            yd, wd = self._yd, self._wd
            pool.run_ranges(P, float(sum(prog.tape.n_nodes)) * N,
                            lambda c0, c1: prog.loss_range(X, yd, wd, acc, c0, c1))
            seconds["score"] += time.perf_counter() - t

        def predict(c0: int, c1: int, pred: np.ndarray) -> None:
            prog = make(items[c0:c1])
            t = time.perf_counter()
            pool.run_ranges(c1 - c0, float(sum(prog.tape.n_nodes)) * N,
                            lambda a, b: prog.predict_range(X, None, pred, a, b))
            seconds["score"] += time.perf_counter() - t
        return self._metric_of(P, W, accumulate, predict)

    def _predict(self, exprs: list[Expr]) -> np.ndarray:
        P, N = len(exprs), self.n_rows
        out = np.empty((P, N), dtype=self._np)
        if not P:
            return out
        prog = self._program(exprs)
        t = time.perf_counter()
        from symcore.codegen import pool
        work = float(sum(prog.tape.n_nodes)) * N
        X = self._Xcol
        pool.run_ranges(P, work, lambda c0, c1: prog.predict_range(X, None, out, c0, c1))
        self.stats.seconds["score"] += time.perf_counter() - t
        return out



def _is_dask(obj: Any) -> bool:
    """A Dask collection (array, DataFrame), recognised without importing dask."""
    return type(obj).__module__.split(".")[0] in ("dask", "dask_expr")
