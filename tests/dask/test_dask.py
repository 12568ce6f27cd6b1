"""symcore.dask on a LocalCluster of 2 worker processes: score, predict (and fit) over
partitioned rows equal the in-memory results, however the rows are partitioned."""

from __future__ import annotations

import os
import pickle
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")

import symcore  # noqa: E402
from symcore import dask as sd  # noqa: E402
from symcore.errors import DataError  # noqa: E402

POP_TEXT = ["sin(x0)*x1 + 100", "x0 + x1*x2", "log(x0)", "x2*0 + 100", "exp(x0) / x1",
            "x0*x0*x0 - 2.5*x2"]
METRICS = ["mse", "rmse", "mae", "nmse", "r2"]


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40)
    c = distributed.Client(cluster)
    import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(7)
    n = 997
    X = rng.normal(size=(n, 3))
    X[5, 1] = 0.0                                   # exp(x0)/x1 is inf on one row
    y = np.sin(X[:, 0]) * X[:, 1] + 100 + 0.1 * rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, size=n)
    pop = [symcore.read(t, dialect="symcore") for t in POP_TEXT]
    return pop, X, y, w


def _close(got, ref, rtol=1e-12):
    got, ref = np.asarray(got), np.asarray(ref)
    assert np.array_equal(np.isnan(got), np.isnan(ref)), (got, ref)
    assert np.array_equal(np.isposinf(got), np.isposinf(ref)), (got, ref)
    assert np.array_equal(np.isneginf(got), np.isneginf(ref)), (got, ref)
    fin = np.isfinite(ref)
    # relative, or absolute for metrics near zero (r2 = 1 - sse/sst cancels there)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=rtol, atol=1e-12)


def _pearson(pred, y, w):
    out = []
    for p in pred:
        if not np.isfinite(p).all():
            out.append(np.nan)
            continue
        if np.ptp(p) == 0:          # a constant prediction: the correlation is undefined
            out.append(np.nan)
            continue
        mp, my = np.average(p, weights=w), np.average(y, weights=w)
        c = np.sum(w * (p - mp) * (y - my))
        vp, vy = np.sum(w * (p - mp) ** 2), np.sum(w * (y - my) ** 2)
        out.append(c / np.sqrt(vp * vy) if vp > 0 and vy > 0 else 0.0)
    return np.array(out)


@pytest.mark.parametrize("chunks", [997, 100, 1, (0, 500, 0, 497)])
def test_score_equals_in_memory_on_every_partitioning(client, problem, chunks):
    pop, X, y, w = problem
    if chunks == 1:      # one row per partition: a small slice keeps the graph small
        X, y, w = X[:40], y[:40], w[:40]
    k = symcore.compile(pop, tier=0)
    ch = chunks
    dX = da.from_array(X, chunks=(ch, 3))
    dy, dw = da.from_array(y, chunks=(ch,)), da.from_array(w, chunks=(ch,))
    for metric in METRICS:
        _close(sd.score(pop, dX, dy, metric=metric), k.score(X, y, metric))
        _close(sd.score(pop, dX, dy, metric=metric, weights=dw),
               k.score(X, y, metric, weights=w))
    _close(sd.score(pop, dX, dy, metric="pearson", weights=dw),
           _pearson(k.predict(X), y, w), rtol=1e-10)


def test_predict_is_lazy_and_equal(client, problem):
    pop, X, y, _ = problem
    dX = da.from_array(X, chunks=((300, 0, 697), 3))
    out = sd.predict(pop, dX)
    assert isinstance(out, da.Array) and out.shape == (len(pop), X.shape[0])
    np.testing.assert_array_equal(out.compute(), symcore.compile(pop, tier=0).predict(X))


def test_dataframe_columns_by_name(client, problem):
    pop, X, y, w = problem
    df = pd.DataFrame({"b": X[:, 1], "target": y, "a": X[:, 0], "c": X[:, 2], "w": w})
    ddf = dd.from_pandas(df, npartitions=4)
    k = symcore.compile(pop, tier=0)
    got = sd.score(pop, ddf, "target", metric="mse", columns=["a", "b", "c"],
                   weights=ddf["w"])
    _close(got, k.score(X, y, "mse", weights=w))
    with pytest.raises(DataError, match="nope"):
        sd.score(pop, ddf, "nope", columns=["a", "b", "c"])
    with pytest.raises(DataError, match="uses 3 column"):
        sd.score(pop, ddf, "target", columns=["a", "b"])


def _kill_once(block, marker):
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os._exit(1)          # the worker process dies mid-task; Dask reschedules the task
    return block


def test_worker_killed_mid_task_is_retried(client, problem, tmp_path):
    pop, X, y, _ = problem
    marker = str(tmp_path / "killed")
    dX = da.from_array(X, chunks=(250, 3)).map_blocks(_kill_once, marker, dtype=float,
                                                       meta=np.empty((0, 0)))
    got = sd.score(pop, dX, da.from_array(y, chunks=250), metric="r2")
    assert os.path.exists(marker)
    _close(got, symcore.compile(pop, tier=0).score(X, y, "r2"))


def test_expr_and_kernel_pickle(problem):
    pop = problem[0]
    assert pickle.loads(pickle.dumps(pop)) == pop       # interned: the same objects come back
    k = symcore.compile(pop, tier=0)
    k2 = pickle.loads(pickle.dumps(k))
    X = problem[1][:50]
    np.testing.assert_array_equal(k2.predict(X), k.predict(X))


def test_bad_inputs_are_typed(problem):
    pop, X, y, _ = problem
    dX = da.from_array(X, chunks=(100, 3))
    with pytest.raises(DataError, match="metric"):
        sd.score(pop, dX, da.from_array(y, chunks=100), metric="spearman")
    with pytest.raises(DataError, match="rows"):
        sd.score(pop, dX, da.from_array(y[:-1], chunks=100))
    with pytest.raises(DataError, match="Dask array or DataFrame"):
        sd.score(pop, X, y)
    with pytest.raises(symcore.SymcoreError):
        sd.score(["x0"], dX, da.from_array(y, chunks=100))


def _sizes(chunk):
    return [e.size for e in chunk]


def test_map_population_keeps_order(client, problem):
    pop = problem[0] * 5
    assert sd.map_population(_sizes, pop, chunk_size=4, client=client) == [e.size for e in pop]


def test_fit_over_partitions_matches_in_memory(client):
    rng = np.random.default_rng(3)
    X = rng.uniform(0.5, 2.0, size=(600, 2))
    y = 2.5 * np.exp(-0.7 * X[:, 0]) + 1.5 * X[:, 1]
    w = rng.uniform(0.5, 1.5, size=600)
    pop = [symcore.read(t, dialect="symcore") for t in
           ["p0 * exp(p1 * x0) + p2 * x1", "p0 * x0 + p1", "x0 * x1"]]
    ref = symcore.fit(pop, X, y, params0=[[1.0, -1.0, 1.0], [1.0, 1.0], None], weights=w,
                      tier=0)
    dX = da.from_array(X, chunks=((1, 299, 0, 300), 2))
    got = sd.fit(pop, dX, da.from_array(y, chunks=((1, 299, 0, 300),)),
                 params0=[[1.0, -1.0, 1.0], [1.0, 1.0], None],
                 weights=da.from_array(w, chunks=((1, 299, 0, 300),)))
    np.testing.assert_allclose(got[0].params, [2.5, -0.7, 1.5], rtol=1e-6)
    for g, r in zip(got, ref):
        assert g.status == r.status
        np.testing.assert_allclose(g.params, r.params, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(g.loss, r.loss, rtol=1e-6, atol=1e-20)
        # the reported loss is the loss of the returned model
        pred = symcore.evaluate(g.expr, X)
        np.testing.assert_allclose(g.loss, np.average((pred - y) ** 2, weights=w),
                                   rtol=1e-9, atol=1e-25)



def test_session_over_dask_data_equals_in_memory_session(client, problem):
    pop, X, y, w = problem
    dX, dy, dw = (da.from_array(X, chunks=(300, 3)), da.from_array(y, chunks=300),
                  da.from_array(w, chunks=300))
    for metric in ["mse", "r2", "mae", "pearson"]:
        mem = symcore.Session(X, y, weights=w, metric=metric)
        dist = symcore.Session(dX, dy, weights=dw, metric=metric)
        ref = mem.score(pop)
        got = dist.score(pop)
        _close(got, ref, rtol=1e-10)
        again = dist.score(pop)              # answered from the cache: nothing recomputed
        assert dist.stats.hits >= len(pop) and np.array_equal(again, got, equal_nan=True)
    np.testing.assert_array_equal(dist.predict(pop).compute(), mem.predict(pop))
    with pytest.raises(DataError, match="spearman"):
        symcore.Session(dX, dy, metric="spearman")
    with pytest.raises(DataError, match="in memory"):
        dist.score(pop, weights=np.ones((len(pop), X.shape[0])))
