"""Parameter Jacobians, public entry points: the compiled `jacobian` of one expression and the
names callers used from this module before the split by concept (templates, reference, data,
tier1, tier0)."""

from __future__ import annotations

from symcore.codegen.grad.data import Data, prepare_data
from symcore.codegen.grad.reference import jacobian_reference
from symcore.codegen.grad.templates import active_nodes, deriv_template
from symcore.codegen.grad.tier0 import Tier0Grad
from symcore.codegen.grad.tier0_emit import T0_UNROLL, T0_UNROLLED_PARAMS, emit_tier0
from symcore.codegen.grad.tier1 import (NORMAL_MODES, GradKernels, compile_loss_kernels,
                                        emit_jacobian, emit_normal, jacobian)

__all__ = ["deriv_template", "active_nodes", "jacobian_reference", "emit_normal", "emit_jacobian",
           "GradKernels", "Tier0Grad", "Data", "prepare_data", "jacobian", "NORMAL_MODES",
           "compile_loss_kernels", "emit_tier0", "T0_UNROLL", "T0_UNROLLED_PARAMS"]
