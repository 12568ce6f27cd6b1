"""symcore.metrics: the SR benchmarks' own judgements of a found model against the ground truth
(SRSD's normalised tree edit distance, SRBench's symbolic and accuracy solutions), fast.

Needs the `metrics` extra (zss); nothing here is imported by `import symcore`.
"""

from symcore.metrics.edit_distance import (EditDistance, agreement, clear_cache, normal_forms,
                                           tree_edit_distance, tree_edit_distances)
from symcore.metrics.trees import MetricsError

__all__ = ["EditDistance", "MetricsError", "agreement", "clear_cache", "normal_forms",
           "tree_edit_distance", "tree_edit_distances"]
