"""Systems traced from dysts flows equal the flows' own right-hand sides."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dysts")

import symcore  # noqa: E402
from symcore import SymcoreError  # noqa: E402
from symcore.integrations.dysts import from_flow, traced_flows  # noqa: E402


def test_traced_flows_match_dysts_rhs_and_integrate():
    rep = traced_flows(["Lorenz", "Rossler", "Aizawa", "BelousovZhabotinsky"])
    assert set(rep.systems) == {"Lorenz", "Rossler", "Aizawa"}
    assert "BelousovZhabotinsky" in rep.skipped      # branches on a state value
    for name, (s, flow) in rep.systems.items():
        ic = np.asarray(flow.ic, dtype=float)
        np.testing.assert_allclose(s.rhs(0.0, ic), np.asarray(flow.rhs(ic, 0.0), dtype=float),
                                   rtol=1e-12, err_msg=name)
        y = symcore.odeint(s, ic, np.linspace(0, 0.1, 3))
        assert np.isfinite(y).all()


# rhs calling np.sin/np.cos/np.exp/np.tanh/np.cosh on the state (and on t for Torus)
NUMPY_FLOWS = ["ArnoldBeltramiChildress", "Thomas", "Torus", "Duffing", "YuWang2",
               "WindmiReduced", "DoublePendulum"]


def test_flows_calling_numpy_functions_trace_and_match():
    import dysts.flows
    rep = traced_flows(NUMPY_FLOWS)
    assert sorted(rep.systems) == sorted(NUMPY_FLOWS), rep.skipped
    assert dysts.flows.np is np                       # the module's np is restored
    rng = np.random.default_rng(0)
    for name, (s, flow) in rep.systems.items():
        for t in (0.0, 0.37):
            y = np.asarray(flow.ic, dtype=float) * (1 + 0.1 * rng.standard_normal(s.n))
            np.testing.assert_allclose(s.rhs(t, y), np.asarray(flow.rhs(y, t), dtype=float),
                                       rtol=1e-10, atol=1e-12, err_msg=name)


def test_untraceable_flow_raises_typed_error():
    import dysts.flows
    with pytest.raises(SymcoreError):
        from_flow(dysts.flows.BelousovZhabotinsky())
    assert dysts.flows.np is np
