"""Scale-out on Dask: score, predict and fit a population over row-partitioned data (Dask arrays
or DataFrames, e.g. Parquet on shared storage) with the same compiled kernels as in memory.

Only the IR travels to the workers (an `Expr` pickles as its flat form); every worker builds its
own tier-0 kernels on first use and keeps them per population.  Scores are combined from
per-partition sufficient statistics in a tree (pairwise Chan updates for the moments, so r2 and
pearson equal the in-memory values to ~1e-15 relative however the rows are partitioned).

Optional extra: `pip install 'symcore[dask]'`; importing symcore never imports dask.
"""

from __future__ import annotations

import hashlib
import os
import math
import threading
from collections import OrderedDict
from typing import Any, Callable, Literal, Sequence

import numpy as np

from symcore.errors import DataError, FitError, SymcoreError
from symcore.ir import Expr
from symcore.scoring import (Stats, block_stats, combine, combine_all, empty_stats,
                             metric_from_stats)

__all__ = ["score", "predict", "fit", "map_population", "DaskMetric", "client_from_spec",
           "DaskScorer", "read_frame"]

DaskMetric = Literal["mse", "rmse", "mae", "nmse", "r2", "pearson"]
_METRICS = ("mse", "rmse", "mae", "nmse", "r2", "pearson")
#: tree reduction fan-in (partitions combined per task)
SPLIT_EVERY = 8
#: rows per predict call inside a partition for the prediction-based statistics (pearson):
#: bounds the (P, rows) prediction block to ~64 MB
_PRED_BLOCK_VALUES = 8 << 20


def _dask() -> Any:
    try:
        import dask
        import dask.array  # noqa: F401 - registers the array collection
    except ImportError as exc:  # pragma: no cover - exercised without the extra only
        raise SymcoreError("symcore.dask needs the dask extra: pip install 'symcore[dask]'") \
            from exc
    return dask


# -- worker side: kernels cached per population -------------------------------------------------

_KERNELS: "OrderedDict[tuple[str, str], Any]" = OrderedDict()
_KERNELS_LOCK = threading.Lock()
_KERNELS_MAX = 8


def _population_key(exprs: Sequence[Expr]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for e in exprs:
        h.update(e.digest().encode())
        h.update(b";")
    return h.hexdigest()


def _cached(kind: str, exprs: Sequence[Expr], build: Callable[[], Any]) -> Any:
    key = (kind, _population_key(exprs))
    with _KERNELS_LOCK:
        hit = _KERNELS.get(key)
        if hit is not None:
            _KERNELS.move_to_end(key)
            return hit
    obj = build()
    with _KERNELS_LOCK:
        _KERNELS[key] = obj
        while len(_KERNELS) > _KERNELS_MAX:
            _KERNELS.popitem(last=False)
    return obj


def _kernel(exprs: Sequence[Expr]) -> Any:
    from symcore.codegen.eval.kernels import compile as compile_kernels
    return _cached("tier0", exprs, lambda: compile_kernels(list(exprs), "float64", tier=0))


def _as_float_matrix(X: Any, n_cols: int | None = None) -> np.ndarray:
    A = np.asarray(X, dtype=np.float64)
    if A.ndim == 1:
        A = A.reshape(-1, 1)
    if A.ndim != 2:
        raise DataError(f"a partition of X must be 2-D, got shape {A.shape}")
    return A


def _partition_stats(exprs: Sequence[Expr], X: Any, y: Any, w: Any, metric: str) -> Stats:
    """All candidates' statistics on one partition (runs on a worker)."""
    A = _as_float_matrix(X)
    yv = np.asarray(y, dtype=np.float64).reshape(-1)
    if yv.shape[0] != A.shape[0]:
        raise DataError(f"a partition has {A.shape[0]} rows of X but {yv.shape[0]} of y")
    wv = np.ones(A.shape[0]) if w is None else np.asarray(w, dtype=np.float64).reshape(-1)
    if wv.shape[0] != A.shape[0]:
        raise DataError(f"a partition has {A.shape[0]} rows of X but {wv.shape[0]} weights")
    moments = metric == "pearson"
    P = len(exprs)
    if A.shape[0] == 0:
        return empty_stats(P, moments)
    k = _kernel(exprs)
    if not moments and float(wv.sum()) > 0:
        # fused in-kernel losses (no prediction array): Σ w r² = mse · Σ w
        st = block_stats(np.zeros((0, A.shape[0])), yv, wv, False)
        sw = st.n
        which = "mae" if metric == "mae" else "mse"
        loss = k.score(A, yv, which, weights=None if w is None else wv)
        bad = ~np.isfinite(loss)
        with np.errstate(all="ignore"):
            tot = np.where(bad, np.inf, loss * sw)
        st.bad = bad
        st.sse = tot if which == "mse" else np.zeros(P)
        st.sae = tot if which == "mae" else np.zeros(P)
        return st
    rows = max(1, _PRED_BLOCK_VALUES // max(P, 1))
    parts = []
    for lo in range(0, A.shape[0], rows):
        hi = min(A.shape[0], lo + rows)
        parts.append(block_stats(k.predict(A[lo:hi]).astype(np.float64), yv[lo:hi],
                                  wv[lo:hi], moments))
    return combine_all(parts)


# -- inputs --------------------------------------------------------------------------------------

def _check_exprs(exprs: Any) -> list[Expr]:
    if isinstance(exprs, Expr):
        return [exprs]
    if isinstance(exprs, (str, bytes)) or not hasattr(exprs, "__iter__"):
        raise SymcoreError(f"expected an Expr or a sequence of Expr, got {type(exprs).__name__}")
    out = list(exprs)
    for i, e in enumerate(out):
        if not isinstance(e, Expr):
            raise SymcoreError(f"candidate {i} is not an Expr (got {type(e).__name__})")
    return out


def _n_vars(exprs: Sequence[Expr]) -> int:
    from symcore.walk import topo
    hi = -1
    for node in topo(exprs):
        if node.op == "var":
            hi = max(hi, node.value if isinstance(node.value, int) else node.value[0])
    return hi + 1


def _partitions(X: Any, y: Any, weights: Any, columns: Sequence[str] | None
                ) -> tuple[list[Any], list[Any], list[Any] | None, int]:
    """Row partitions of X, y and the weights as lists of delayed objects (same length), and
    the number of columns.  X: a Dask array (n, d) or a Dask DataFrame; y: a Dask array /
    Series, or a column name of X's DataFrame."""
    dask = _dask()
    import dask.array as da
    try:
        import dask.dataframe as dd
    except ImportError:  # pragma: no cover - dataframe support is part of the extra
        dd = None
    if dd is not None and isinstance(X, dd.DataFrame):
        if isinstance(y, str):
            if y not in X.columns:
                raise DataError(f"target column {y!r} is not in the DataFrame "
                                f"(columns: {', '.join(map(str, X.columns))})")
            yser = X[y]
            feats = [c for c in X.columns if c != y]
        else:
            yser = y
            feats = list(X.columns)
        if columns is not None:
            missing = [c for c in columns if c not in X.columns]
            if missing:
                raise DataError(f"column(s) {', '.join(map(str, missing))} not in the DataFrame")
            feats = list(columns)
        # one frame, so features, target and weights are partitioned alike (Dask may fuse
        # the partitions of a projection differently from those of the whole frame)
        extra = {"__symcore_y": yser}
        if weights is not None:
            if isinstance(weights, str):
                if weights not in X.columns:
                    raise DataError(f"weights column {weights!r} is not in the DataFrame")
                weights = X[weights]
            elif not isinstance(weights, dd.Series):
                raise DataError("with a DataFrame X, weights must be a column name or a Dask "
                                f"Series, got {type(weights).__name__}")
            extra["__symcore_w"] = weights
        if not isinstance(yser, dd.Series):
            raise DataError("with a DataFrame X, y must be a column name or a Dask Series, "
                            f"got {type(yser).__name__}")
        frame = X[feats].assign(**extra).astype("float64")
        split = [dask.delayed(_split_frame, nout=3, pure=True)(p, len(feats))
                 for p in frame.to_delayed()]
        xs = [sp[0] for sp in split]
        ys = [sp[1] for sp in split]
        ws = [sp[2] for sp in split] if weights is not None else None
        return xs, ys, ws, len(feats)
    if isinstance(y, str):
        raise DataError("y as a column name needs X to be a Dask DataFrame")
    if not isinstance(X, da.Array):
        raise DataError(f"X must be a Dask array or DataFrame, got {type(X).__name__}")
    if X.ndim != 2:
        raise DataError(f"X must be 2-D (rows, columns), got {X.ndim}-D")
    X = X.rechunk({1: -1})
    xs = [b[0] for b in X.to_delayed().tolist()] if X.shape[1] else \
        [b for b in X.to_delayed().ravel()]
    ys = _array_parts(y, X.chunks[0], "y")
    ws = None if weights is None else _array_parts(weights, X.chunks[0], "weights")
    return xs, ys, ws, int(X.shape[1])


def _split_frame(part: Any, n_feats: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    A = np.asarray(part, dtype=np.float64)
    w = A[:, n_feats + 1].copy() if A.shape[1] > n_feats + 1 else None
    return np.ascontiguousarray(A[:, :n_feats]), A[:, n_feats].copy(), w


def _array_parts(a: Any, chunks: tuple[int, ...], what: str) -> list[Any]:
    import dask.array as da
    if not isinstance(a, da.Array):
        a = da.from_array(np.asarray(a, dtype=np.float64), chunks=(chunks,))
    if a.ndim != 1:
        a = a.reshape(-1)
    if a.shape[0] != sum(chunks):
        raise DataError(f"{what} has {a.shape[0]} rows, X has {sum(chunks)}")
    if a.chunks[0] != chunks:
        a = a.rechunk((chunks,))
    return list(a.to_delayed().ravel())


def _tree(dask: Any, items: list[Any], combine: Callable[[list[Any]], Any]) -> Any:
    """Combine delayed items in a tree of fan-in SPLIT_EVERY."""
    level = items
    while len(level) > 1:
        level = [dask.delayed(combine)(level[i:i + SPLIT_EVERY])
                 for i in range(0, len(level), SPLIT_EVERY)]
    return level[0]


def _check_cols(exprs: Sequence[Expr], n_cols: int) -> None:
    need = _n_vars(exprs)
    if need > n_cols:
        raise DataError(f"the population uses {need} column(s), the data has {n_cols}")


# -- public API ----------------------------------------------------------------------------------

def score(exprs: Expr | Sequence[Expr], X: Any, y: Any, *, metric: DaskMetric = "mse",
          weights: Any = None, columns: Sequence[str] | None = None,
          compute: bool = True) -> Any:
    """Fitness of every candidate over partitioned rows, (P,) float64, equal to the in-memory
    `symcore.compile(exprs).score(X, y, metric, weights)` (pearson: the weighted Pearson
    correlation of prediction and target, NaN when either is constant or a prediction is not
    finite).  X: a Dask array or DataFrame (then y may be a column name and `columns` names
    the feature columns in variable order; default every other column).  With
    `compute=False` the result is a Dask delayed object."""
    dask = _dask()
    if metric not in _METRICS:
        raise DataError(f"unknown metric {metric!r}; one of {', '.join(_METRICS)}")
    pop = _check_exprs(exprs)
    xs, ys, ws, n_cols = _partitions(X, y, weights, columns)
    _check_cols(pop, n_cols)
    dpop = dask.delayed(pop, pure=True, traverse=False)
    parts = [dask.delayed(_partition_stats, pure=True)(dpop, x, yy, None if ws is None else w,
                                                       metric)
             for x, yy, w in zip(xs, ys, ws if ws is not None else [None] * len(xs))]
    total = _tree(dask, parts, combine_all)
    out = dask.delayed(metric_from_stats, pure=True)(total, metric)
    return out.compute() if compute else out


def _predict_part(exprs: Sequence[Expr], X: Any) -> np.ndarray:
    A = _as_float_matrix(X)
    if A.shape[0] == 0:
        return np.zeros((len(exprs), 0))
    return _kernel(exprs).predict(A).astype(np.float64)


def predict(exprs: Expr | Sequence[Expr], X: Any, *,
            columns: Sequence[str] | None = None) -> Any:
    """Predictions of every candidate, lazily: a Dask array (P, n) chunked like X's rows."""
    dask = _dask()
    import dask.array as da
    pop = _check_exprs(exprs)
    try:
        import dask.dataframe as dd
        is_df = isinstance(X, dd.DataFrame)
    except ImportError:  # pragma: no cover
        is_df = False
    if is_df:
        feats = list(columns) if columns is not None else list(X.columns)
        xs = [dask.delayed(np.asarray)(p) for p in X[feats].astype("float64").to_delayed()]
        sizes = X.map_partitions(len).compute().tolist()
        n_cols = len(feats)
    else:
        if not isinstance(X, da.Array) or X.ndim != 2:
            raise DataError("X must be a 2-D Dask array or a Dask DataFrame")
        X = X.rechunk({1: -1})
        xs = [b[0] for b in X.to_delayed().tolist()]
        sizes = list(X.chunks[0])
        n_cols = int(X.shape[1])
    _check_cols(pop, n_cols)
    dpop = dask.delayed(pop, pure=True, traverse=False)
    blocks = [da.from_delayed(dask.delayed(_predict_part, pure=True)(dpop, x),
                              shape=(len(pop), n), dtype=np.float64)
              for x, n in zip(xs, sizes)]
    if not blocks:
        return da.zeros((len(pop), 0))
    return da.concatenate(blocks, axis=1)


def _grad_kernels(models: Sequence[Expr]) -> Any:
    from symcore.codegen.grad.tier0 import Tier0Grad
    return _cached("grad", models, lambda: Tier0Grad(list(models)))


def _partition_normals(models: Sequence[Expr], X: Any, y: Any, w: Any, ids: np.ndarray,
                       params: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """(Σ w, Σ w r² (K,), Jᵀ W r (K, Pm), Jᵀ W J (K, Pm, Pm)) of candidates `ids` at `params`
    on one partition, in one tier-0 Jacobian call (runs on a worker)."""
    from symcore.codegen.grad.data import prepare_data
    A = _as_float_matrix(X)
    K, Pm = params.shape
    if A.shape[0] == 0:
        return 0.0, np.zeros(K), np.zeros((K, Pm)), np.zeros((K, Pm, Pm))
    yv = np.asarray(y, dtype=np.float64).reshape(-1)
    wv = None if w is None else np.asarray(w, dtype=np.float64).reshape(-1)
    kern = _grad_kernels(models)
    data = prepare_data(A, yv, wv, kern.lanes)
    f, g, H = kern.normal_batch(ids, params, data)
    return data.sum_w, f, g, H


def _sum_normals(parts: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]]
                 ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    sw, f, g, H = parts[0]
    for p in parts[1:]:
        sw, f, g, H = sw + p[0], f + p[1], g + p[2], H + p[3]
    return sw, f, g, H


def fit(exprs: Expr | Sequence[Expr], X: Any, y: Any, *, params0: Any = None,
        weights: Any = None, columns: Sequence[str] | None = None, max_iter: int | None = None,
        tol: float = 1e-8, lift: Any = "auto") -> list[Any]:
    """Levenberg–Marquardt over partitioned rows for a whole population at once: every round
    sums the per-partition normal equations (Σ w r², Jᵀ W r, Jᵀ W J) of all unfinished
    candidates, computed by the tier-0 Jacobian interpreter on the workers, and takes one
    trial step of each on the client (symcore.codegen.fit.lm.lm_batch, the same iterates as the
    in-memory fit up to rounding).  A round is one pass over the (persisted) data.  Returns one
    `FitResult` per expression; `params0`, `max_iter`, `tol`, `lift` as in `symcore.fit`."""
    dask = _dask()
    from symcore.codegen.fit.api import FitResult, _n_params, _prepare_model
    from symcore.params import bind_params
    from symcore.codegen.fit.lm import lm_batch
    pop = _check_exprs(exprs)
    if max_iter is not None and (isinstance(max_iter, bool) or not isinstance(max_iter, int)
                                 or max_iter < 0):
        raise FitError(f"max_iter must be a non-negative int, got {max_iter!r}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
        raise FitError(f"tol must be a finite non-negative number, got {tol!r}")
    starts0 = [None] * len(pop) if params0 is None else list(params0)
    if len(starts0) != len(pop):
        raise DataError(f"params0 has {len(starts0)} vector(s) for {len(pop)} expressions")
    models = [_prepare_model(e, s, lift) for e, s in zip(pop, starts0)]
    fitted = [m for m, _ in models]
    xs, ys, ws, n_cols = _partitions(X, y, weights, columns)
    _check_cols(pop, n_cols)
    # the data stays on the workers for every round
    xs, ys = list(dask.persist(*xs)), list(dask.persist(*ys))
    ws = list(dask.persist(*ws)) if ws is not None else [None] * len(xs)
    dmodels = dask.delayed(fitted, pure=True, traverse=False)
    n_par = [_n_params(m) for m in fitted]
    Pm = max(max(n_par, default=0), 1)

    def evaluate(cids: np.ndarray, params: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = np.ascontiguousarray(cids, dtype=np.int64)
        pa = np.ascontiguousarray(params, dtype=np.float64)
        parts = [dask.delayed(_partition_normals, pure=True)(dmodels, x, yy, w, ids, pa)
                 for x, yy, w in zip(xs, ys, ws)]
        sw, f, g, H = dask.compute(_tree(dask, parts, _sum_normals))[0]
        sum_w[0] = sw
        return f, g, H

    sum_w = [0.0]
    runs: dict[int, tuple[np.ndarray, int, str]] = {}
    todo = [k for k in range(len(pop)) if n_par[k] > 0]
    for k in range(len(pop)):
        if n_par[k] == 0:
            runs[k] = (models[k][1], 0, "converged")
    if todo:
        cids = np.array(todo, dtype=np.int64)
        starts = np.zeros((len(todo), Pm))
        for j, k in enumerate(todo):
            starts[j, :n_par[k]] = models[k][1]
        budgets = np.array([max_iter if max_iter is not None else 100 * n_par[k]
                            for k in todo], dtype=np.int64)

        def one(k: int) -> Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]]:
            def normal(p: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
                pad = np.zeros((1, Pm))
                pad[0, :p.shape[0]] = p
                f, g, H = evaluate(np.array([k]), pad)
                P = n_par[k]
                return float(f[0]), g[0, :P].copy(), H[0, :P, :P].copy()
            return normal
        normals = [one(k) for k in range(len(pop))]
        out = lm_batch(cids, starts, np.array(n_par)[cids], budgets, float(tol), evaluate,
                       normals)
        for k, (p, _, it, status) in zip(todo, out):
            runs[k] = (p, it, status)
    # the reported loss is the loss of the returned model, over every row (one more pass)
    bound = [bind_params(fitted[k], runs[k][0]) for k in range(len(pop))]
    w_arg = None if weights is None else weights
    losses = score(bound, X, y, metric="mse", weights=w_arg, columns=columns)
    return [FitResult(bound[k], runs[k][0], float(losses[k]), runs[k][1], runs[k][2],
                      fitted[k]) for k in range(len(pop))]


def map_population(func: Callable[[list[Expr]], Sequence[Any]], exprs: Sequence[Expr], *,
                   chunk_size: int = 256, client: Any = None) -> list[Any]:
    """`func(chunk)` over chunks of the population on the workers (for small data and a
    large population, e.g. a 100k-candidate refit): results concatenated in input order.
    `func` must be picklable (a module-level function) and return one result per candidate."""
    dask = _dask()
    pop = _check_exprs(exprs)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise DataError(f"chunk_size must be a positive int, got {chunk_size!r}")
    chunks = [pop[i:i + chunk_size] for i in range(0, len(pop), chunk_size)]
    tasks = [dask.delayed(_checked_map, pure=True)(func, c) for c in chunks]
    if client is not None:
        results = client.gather(client.compute(tasks))
    else:
        results = dask.compute(*tasks)
    return [r for chunk in results for r in chunk]


def _checked_map(func: Callable[[list[Expr]], Sequence[Any]], chunk: list[Expr]) -> list[Any]:
    out = list(func(chunk))
    if len(out) != len(chunk):
        raise SymcoreError(f"map_population: func returned {len(out)} result(s) for "
                           f"{len(chunk)} candidate(s)")
    return out


def client_from_spec(spec: str) -> Any:
    """A `distributed.Client` from a CLI-style spec: 'local:N' (a LocalCluster with N worker
    processes), 'local' (one per core) or a scheduler address 'tcp://host:8786'."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise SymcoreError("--dask needs the dask extra: pip install 'symcore[dask]'") from exc
    if spec == "local" or spec.startswith("local:"):
        n = spec.partition(":")[2]
        if n and not n.isdigit():
            raise DataError(f"--dask local:N needs a worker count, got {spec!r}")
        import logging
        cluster = LocalCluster(n_workers=int(n) if n else None, threads_per_worker=1,
                               processes=True, dashboard_address=":0",
                               silence_logs=logging.ERROR)
        return Client(cluster)
    if "://" not in spec:
        raise DataError(f"--dask expects 'local', 'local:N' or a scheduler address like "
                        f"tcp://host:8786, got {spec!r}")
    return Client(spec)


class DaskScorer:
    """Scores populations on a Dask DataFrame held by a cluster, for `symcore run --dask`:
    `scorer(exprs, metric)` -> (P,) scores; `sample(n)` gives the first rows in memory (for
    the checks that need data at hand); `n_rows`, `features`, `target`, `dashboard`."""

    def __init__(self, frame: Any, target: str | None, client: Any) -> None:
        import dask.dataframe as dd
        if not isinstance(frame, dd.DataFrame):
            raise DataError(f"DaskScorer needs a Dask DataFrame, got {type(frame).__name__}")
        cols = [str(c) for c in frame.columns]
        self.target = target if target is not None else cols[-1]
        if self.target not in cols:
            raise DataError(f"no target column {self.target!r}; columns are: {', '.join(cols)}")
        self.features = [c for c in cols if c != self.target]
        if not self.features:
            raise DataError(f"needs at least one feature column besides {self.target!r}")
        self.client = client
        with client.as_current():
            self.frame = client.persist(frame.astype("float64"))
            self.n_rows = int(self.frame.shape[0].compute())
        self.dashboard = getattr(client, "dashboard_link", None)

    def sample(self, n: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
        with self.client.as_current():
            head = self.frame.head(n, npartitions=-1)
        return (head[self.features].to_numpy(dtype=np.float64),
                head[self.target].to_numpy(dtype=np.float64))

    def close(self) -> None:
        """Close the client (and the LocalCluster it started, if any)."""
        cluster = getattr(self.client, "cluster", None)
        self.client.close()
        if cluster is not None:
            cluster.close()

    def __call__(self, exprs: Sequence[Expr], metric: str) -> np.ndarray:
        with self.client.as_current():
            return score(exprs, self.frame, self.target, metric=metric,  # type: ignore[arg-type]
                         columns=self.features)


def read_frame(pattern: str) -> Any:
    """A Dask DataFrame from a Parquet file/directory/glob or a CSV glob (by suffix)."""
    dask = _dask()  # noqa: F841 - checks the extra
    import dask.dataframe as dd
    low = pattern.lower()
    try:
        if low.endswith((".parquet", ".pq")) or os.path.isdir(pattern):
            return dd.read_parquet(pattern)
        return dd.read_csv(pattern)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read data {pattern!r}: {err}") from None
