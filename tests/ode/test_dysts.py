"""Systems traced from dysts flows equal the flows' own right-hand sides."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dysts")

import symcore  # noqa: E402
from symcore import SymcoreError  # noqa: E402
from symcore.integrations.dysts import from_flow, traced_flows  # noqa: E402


def test_traced_flows_match_dysts_rhs_and_integrate():
    rep = traced_flows(["Lorenz", "Rossler", "Aizawa", "ArnoldBeltramiChildress"])
    assert set(rep.systems) >= {"Lorenz", "Rossler", "Aizawa"}
    assert "ArnoldBeltramiChildress" in rep.skipped      # np.sin on a symbol: not traceable
    for name, (s, flow) in rep.systems.items():
        ic = np.asarray(flow.ic, dtype=float)
        np.testing.assert_allclose(s.rhs(0.0, ic), np.asarray(flow.rhs(ic, 0.0), dtype=float),
                                   rtol=1e-12, err_msg=name)
        y = symcore.odeint(s, ic, np.linspace(0, 0.1, 3))
        assert np.isfinite(y).all()


def test_untraceable_flow_raises_typed_error():
    import dysts.flows
    with pytest.raises(SymcoreError):
        from_flow(dysts.flows.ArnoldBeltramiChildress())
