"""symcore.metrics: the SR benchmarks' own judgements of a found model against the ground truth
(SRSD's normalised tree edit distance, SRBench's symbolic and accuracy solutions), fast.

Needs the `metrics` extra (zss; edist for a compiled Zhang-Shasha, ~100x faster); nothing here
is imported by `import symcore`.
"""

from symcore.metrics.edit_distance import (EditDistance, agreement, clear_cache, normal_forms,
                                           tree_edit_distance, tree_edit_distances)
from symcore.metrics.solution import (SolutionCheck, accuracy_solution, is_symbolic_solution,
                                      r2_score, symbolic_solutions)
from symcore.metrics.trees import MetricsError

__all__ = ["EditDistance", "MetricsError", "SolutionCheck", "accuracy_solution", "agreement",
           "clear_cache", "is_symbolic_solution", "normal_forms", "r2_score",
           "symbolic_solutions", "tree_edit_distance", "tree_edit_distances"]
