"""gplearn drop-in: `SymbolicRegressor`, `SymbolicTransformer`, `SymbolicClassifier` that build
every generation exactly as gplearn does (same random stream) and score it in one `Session` call.

    from symcore.integrations.gplearn import SymbolicRegressor   # instead of gplearn.genetic

Same parameters, same `_program`, `run_details_`, `predict` as gplearn's (fitness within
rounding, ~1e-15 relative).  gplearn's `fit` runs unchanged; only its per-generation
`Parallel(...)(_parallel_evolve ...)` call is answered here: the programs are built by the
same code path as `_parallel_evolve` (same seeds, tournaments, genetic operations, sample
indices), then their raw fitness comes from the session (tier-0 interpreter, a fitness cache
across generations, programs packed from their token lists without text).  What the
interpreter cannot do exactly as gplearn is left to gplearn's own code: functions that are not
in the ops table (custom `make_function`), custom `make_fitness` and transformers are scored
from the session's predictions with gplearn's own callables, and a program whose fitness comes
out non-finite (an overflow, a NaN, an undefined correlation) is re-scored by gplearn itself,
so gplearn's NaN/inf/0 conventions hold bit for bit.
"""

from __future__ import annotations

import contextlib
import numbers
import threading
from typing import Any, Iterator

import numpy as np

import gplearn.genetic as _gg
from gplearn import fitness as _gf
from gplearn import functions as _gfn
from gplearn._program import _Program
from gplearn.utils import check_random_state

from symcore.errors import SymcoreError
from symcore.ops import OPS
from symcore.session import Session

__all__ = ["SymbolicRegressor", "SymbolicTransformer", "SymbolicClassifier", "op_name"]

# gplearn's functions by the callable they wrap -> ops-table name (protected variants are
# their own ops with gplearn's exact semantics)
_BY_CALLABLE: dict[Any, str] = {
    np.add: "add", np.subtract: "sub", np.multiply: "mul", np.divide: "div",
    _gfn._protected_division: "pdiv", _gfn._protected_sqrt: "sqrt_abs",
    _gfn._protected_log: "plog", _gfn._protected_inverse: "pinv",
    np.negative: "neg", np.abs: "abs", np.maximum: "max", np.minimum: "min",
    np.fmax: "fmax", np.fmin: "fmin",
    np.sin: "sin", np.cos: "cos", np.tan: "tan", np.tanh: "tanh", np.sinh: "sinh",
    np.cosh: "cosh", np.arcsin: "asin", np.arccos: "acos", np.arctan: "atan",
    np.sqrt: "sqrt", np.cbrt: "cbrt", np.exp: "exp", np.log: "log", np.square: "square",
    np.reciprocal: "inv", np.sign: "sign", np.power: "pow",
}

_METRICS: dict[int, tuple[str, bool]] = {   # id(gplearn fitness) -> (session metric, abs)
    id(_gf.mean_square_error): ("mse", False),
    id(_gf.root_mean_square_error): ("rmse", False),
    id(_gf.mean_absolute_error): ("mae", False),
    id(_gf.weighted_pearson): ("pearson", True),
    id(_gf.weighted_spearman): ("spearman", True),
}

_ORIG_PARALLEL = _gg.Parallel
_ORIG_EVOLVE = _gg._parallel_evolve
#: per-candidate weights are materialised (P, N) at most this many floats at a time
_WEIGHT_BLOCK = 1 << 22


def op_name(function: Any) -> str | None:
    """The ops-table op that computes gplearn `_Function` `function` exactly as gplearn does,
    or None (then the program is evaluated by gplearn's NumPy code)."""
    fn = getattr(function, "function", None)
    fn = getattr(fn, "_obj", fn)           # make_function(wrap=True) wraps it for pickling
    try:
        name = _BY_CALLABLE.get(fn)
    except TypeError:                      # unhashable callable
        return None
    if name is None or OPS[name].arity != getattr(function, "arity", None):
        return None
    return name


# -- answering gplearn's per-generation Parallel call --------------------------------------------

_ACTIVE = threading.local()
_PATCH_LOCK = threading.Lock()
_PATCHED = [0]


class _Parallel:
    """Stands in for joblib.Parallel inside gplearn.genetic while a drop-in fits: the drop-in's
    own thread gets its generation built and scored here; anything else (a plain gplearn fit in
    another thread) goes to joblib unchanged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs

    def __call__(self, iterable: Any) -> Any:
        owner = getattr(_ACTIVE, "owner", None)
        tasks = list(iterable)
        if owner is None or not tasks or any(t[0] is not _ORIG_EVOLVE for t in tasks):
            return _ORIG_PARALLEL(*self._args, **self._kwargs)(tasks)
        return owner._symcore_generation(tasks)


@contextlib.contextmanager
def _hooked(owner: Any) -> Iterator[None]:
    with _PATCH_LOCK:
        if _PATCHED[0] == 0:
            _gg.Parallel = _Parallel
        _PATCHED[0] += 1
    prev = getattr(_ACTIVE, "owner", None)
    _ACTIVE.owner = owner
    try:
        yield
    finally:
        _ACTIVE.owner = prev
        with _PATCH_LOCK:
            _PATCHED[0] -= 1
            if _PATCHED[0] == 0:
                _gg.Parallel = _ORIG_PARALLEL


def _random_state(seed: Any, reused: np.random.RandomState) -> np.random.RandomState:
    """gplearn's `check_random_state(seed)`: for an integer seed the same state as a new
    `RandomState(seed)` (MT19937's legacy seeding, no cached Gaussian), in `reused` re-seeded —
    a new RandomState first seeds its MT19937 from OS entropy through a SeedSequence, ~150 us,
    once per program of every generation.  Safe because a program keeps no reference to the
    state it was built with (it saves a copy, `get_state()`, for its sample indices)."""
    if isinstance(seed, (numbers.Integral, np.integer)):
        reused.seed(seed)
        return reused
    return check_random_state(seed)


def _build(n_programs: int, parents: Any, X: np.ndarray, y: np.ndarray, sample_weight: Any,
           seeds: Any, params: dict, last_task: bool) -> list[tuple[_Program, Any]]:
    """gplearn's `_parallel_evolve` up to (not including) the fitness: the same programs from
    the same random stream.  Returns (program, in-bag indices or None) per program."""
    n_samples = X.shape[0]
    tournament_size = params["tournament_size"]
    metric = params["_metric"]
    method_probs = params["method_probs"]
    max_samples = int(params["max_samples"] * n_samples)
    out: list[tuple[_Program, Any]] = []
    reused = np.random.RandomState(0)
    for i in range(n_programs):
        random_state = _random_state(seeds[i], reused)
        if parents is None:
            program = genome = None
        else:
            method = random_state.uniform()
            contenders = random_state.randint(0, len(parents), tournament_size)
            fitness = [parents[p].fitness_ for p in contenders]
            pick = np.argmax(fitness) if metric.greater_is_better else np.argmin(fitness)
            parent_index = contenders[pick]
            parent = parents[parent_index]
            if method < method_probs[0]:
                contenders = random_state.randint(0, len(parents), tournament_size)
                fitness = [parents[p].fitness_ for p in contenders]
                pick = np.argmax(fitness) if metric.greater_is_better else np.argmin(fitness)
                donor_index = contenders[pick]
                donor = parents[donor_index]
                program, removed, remains = parent.crossover(donor.program, random_state)
                genome = {"method": "Crossover", "parent_idx": parent_index,
                          "parent_nodes": removed, "donor_idx": donor_index,
                          "donor_nodes": remains}
            elif method < method_probs[1]:
                program, removed, _ = parent.subtree_mutation(random_state)
                genome = {"method": "Subtree Mutation", "parent_idx": parent_index,
                          "parent_nodes": removed}
            elif method < method_probs[2]:
                program, removed = parent.hoist_mutation(random_state)
                genome = {"method": "Hoist Mutation", "parent_idx": parent_index,
                          "parent_nodes": removed}
            elif method < method_probs[3]:
                program, mutated = parent.point_mutation(random_state)
                genome = {"method": "Point Mutation", "parent_idx": parent_index,
                          "parent_nodes": mutated}
            else:
                program = parent.reproduce()
                genome = {"method": "Reproduction", "parent_idx": parent_index,
                          "parent_nodes": []}
        program = _Program(function_set=params["function_set"], arities=params["arities"],
                           init_depth=params["init_depth"], init_method=params["init_method"],
                           n_features=X.shape[1], metric=metric,
                           transformer=params["_transformer"], const_range=params["const_range"],
                           p_point_replace=params["p_point_replace"],
                           parsimony_coefficient=params["parsimony_coefficient"],
                           feature_names=params["feature_names"], random_state=random_state,
                           program=program)
        program.parents = genome
        if max_samples < n_samples or (last_task and i == n_programs - 1):
            # gplearn's own call (it also leaves numpy's global RandomState where gplearn does)
            indices, _ = program.get_all_indices(n_samples, max_samples, random_state)
        else:
            # all rows in the bag: the sample is empty; only the state is remembered
            program._n_samples = n_samples
            program._max_samples = max_samples
            program._indices_state = random_state.get_state()
            indices = None
        out.append((program, indices if max_samples < n_samples else None))
    return out


class _SymcoreMixin:
    """The generation hook shared by the three estimators."""

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        self._symcore = None
        try:
            with _hooked(self):
                return super().fit(X, y, sample_weight)  # type: ignore[misc]
        finally:
            ctx = self._symcore
            self.symcore_stats_ = None if ctx is None else ctx["session"].stats
            del self._symcore

    def _symcore_generation(self, tasks: list[tuple]) -> list[list[_Program]]:
        built = []
        for j, (_fn, args, kwargs) in enumerate(tasks):
            built.append(_build(*args, **kwargs, last_task=(j == len(tasks) - 1
                                                             and _in_process(self))))
        _n, _parents, X, y, sample_weight, _seeds, params = tasks[0][1]
        flat = [b for chunk in built for b in chunk]
        self._symcore_score(flat, X, y, sample_weight, params)
        return [[p for p, _ in chunk] for chunk in built]

    # -- fitness ----------------------------------------------------------------------------
    def _context(self, X: np.ndarray, y: np.ndarray, sample_weight: Any, params: dict) -> dict:
        ctx = self._symcore
        if ctx is not None and ctx["X"] is X and ctx["y"] is y and ctx["sw"] is sample_weight:
            return ctx
        metric = params["_metric"]
        native = _METRICS.get(id(metric)) if params["_transformer"] is None else None
        full = int(params["max_samples"] * X.shape[0]) >= X.shape[0]
        symbols = {f: op_name(f) for f in params["function_set"]}
        symbols = {f: n for f, n in symbols.items() if n is not None}
        session = Session(X, y, metric=native[0] if native else "mse",
                          weights=sample_weight if full else None, nonfinite="nan")
        ctx = self._symcore = {"X": X, "y": y, "sw": sample_weight, "session": session,
                               "native": native, "symbols": symbols, "full": full,
                               "all_mapped": len(symbols) == len(params["function_set"])}
        return ctx

    def _symcore_score(self, built: list[tuple[_Program, Any]], X: np.ndarray, y: np.ndarray,
                       sample_weight: Any, params: dict) -> None:
        ctx = self._context(X, y, sample_weight, params)
        session: Session = ctx["session"]
        symbols = ctx["symbols"]
        n = X.shape[0]
        base = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
        if ctx["all_mapped"]:    # every function of the set is an op: no per-token check
            fast, slow = list(range(len(built))), []
        else:
            fast = [k for k, (p, _) in enumerate(built) if all(
                type(t) is not _gfn._Function or t in symbols for t in p.program)]
            slow = sorted(set(range(len(built))) - set(fast))
        for k in slow:   # functions outside the ops table: gplearn's own NumPy evaluation
            self._gplearn_fitness(built[k], X, y, base, ctx["full"])
        if not fast:
            return
        programs = [built[k][0].program for k in fast]
        if ctx["native"] is None:
            self._from_predictions([built[k] for k in fast], X, y, base, ctx)
            return
        take_abs = ctx["native"][1]
        if ctx["full"]:
            vals = [session.score_prefix(programs, symbols)]
        else:
            step = max(1, _WEIGHT_BLOCK // n)
            ins, oob = [], []
            for c0 in range(0, len(fast), step):
                part = fast[c0:c0 + step]
                w_in = np.zeros((len(part), n))
                for r, k in enumerate(part):
                    w_in[r, built[k][1]] = base[built[k][1]]
                w_oob = base[None, :] - w_in
                ins.append(session.score_prefix(programs[c0:c0 + step], symbols, weights=w_in))
                oob.append(session.score_prefix(programs[c0:c0 + step], symbols,
                                                weights=w_oob))
            vals = [np.concatenate(ins), np.concatenate(oob)]
        progs = [built[k][0] for k in fast]
        for which, v in enumerate(vals):
            attr = "raw_fitness_" if which == 0 else "oob_fitness_"
            # gplearn's metrics return numpy floats: iterating the array gives them
            for prog, f in zip(progs, np.abs(v) if take_abs else v):
                setattr(prog, attr, f)
            for j in np.flatnonzero(np.isnan(v)).tolist():
                # NaN: non-finite somewhere; gplearn's own value, bit for bit
                prog, idx = built[fast[j]]
                w = _weights(base, idx, oob=which == 1, full=ctx["full"])
                setattr(prog, attr, prog.raw_fitness(X, y, w))

    def _from_predictions(self, built: list[tuple[_Program, Any]], X: np.ndarray,
                          y: np.ndarray, base: np.ndarray, ctx: dict) -> None:
        """Custom fitness / transformer: the session predicts, gplearn's callables judge."""
        session: Session = ctx["session"]
        n = X.shape[0]
        step = max(1, _WEIGHT_BLOCK // n)
        for c0 in range(0, len(built), step):
            part = built[c0:c0 + step]
            pred = session.predict_prefix([p.program for p, _ in part], ctx["symbols"])
            for (prog, idx), yp in zip(part, pred):
                if prog.transformer:
                    yp = prog.transformer(yp)
                w = _weights(base, idx, oob=False, full=ctx["full"])
                prog.raw_fitness_ = prog.metric(y, yp, w)
                if not ctx["full"]:
                    prog.oob_fitness_ = prog.metric(y, yp, _weights(base, idx, True, False))

    @staticmethod
    def _gplearn_fitness(item: tuple[_Program, Any], X: np.ndarray, y: np.ndarray,
                         base: np.ndarray, full: bool) -> None:
        prog, idx = item
        prog.raw_fitness_ = prog.raw_fitness(X, y, _weights(base, idx, False, full))
        if not full:
            prog.oob_fitness_ = prog.raw_fitness(X, y, _weights(base, idx, True, False))


def _weights(base: np.ndarray, idx: Any, oob: bool, full: bool) -> np.ndarray:
    """gplearn's curr_sample_weight (in-bag) or oob_sample_weight for a program."""
    if full:
        return base.copy()
    w = base.copy()
    if oob:
        w[idx] = 0
    else:
        keep = np.zeros(base.shape[0], dtype=bool)
        keep[idx] = True
        w[~keep] = 0
    return w


def _in_process(est: Any) -> bool:
    # gplearn's get_all_indices moves numpy's global RandomState; with n_jobs=1 joblib runs in
    # this process, so the drop-in leaves that state where gplearn would
    n_jobs = getattr(est, "n_jobs", 1)
    return n_jobs in (1, None)


class SymbolicRegressor(_SymcoreMixin, _gg.SymbolicRegressor):
    __doc__ = ("gplearn's SymbolicRegressor, each generation scored in one symcore Session "
               "call.\n\n" + (_gg.SymbolicRegressor.__doc__ or ""))


class SymbolicTransformer(_SymcoreMixin, _gg.SymbolicTransformer):
    __doc__ = ("gplearn's SymbolicTransformer, each generation scored in one symcore Session "
               "call.\n\n" + (_gg.SymbolicTransformer.__doc__ or ""))


class SymbolicClassifier(_SymcoreMixin, _gg.SymbolicClassifier):
    __doc__ = ("gplearn's SymbolicClassifier (log loss through its sigmoid: scored from symcore "
               "predictions by gplearn's own metric).\n\n" + (_gg.SymbolicClassifier.__doc__ or ""))


if not hasattr(_gg, "_parallel_evolve"):   # pragma: no cover - a gplearn this was not written for
    raise SymcoreError("symcore.integrations.gplearn needs gplearn >= 0.4.2 (_parallel_evolve)")
