"""Range analysis and the curvature cost model.

In: an IR `Program` (hnfc.ir), declared input ranges, observed ranges. Out: an `Interval` per
value (`ranges`), predicted bits lost per node and per program (`node_bits`, `program_bits`,
`explain`). The per-op formulas live in the op table (`OpDef.interval`, `.cond`, `.hazard`,
written beside each op family in hnfc/ops/); this package applies them to programs and e-graph nodes.
"""

from hnfc.analysis.curvature import HAZARD_BITS, NodeCost, Prediction, describe_prediction, exact_values, explain, is_exact_node, node_bits, node_cost, predict, predicted_bits, program_bits
from hnfc.analysis.propagate import floored_where, interval_of_node, param_interval, ranges, sample_ranges, widen_observed
from hnfc.foundation.intervals import Interval

__all__ = [
    "HAZARD_BITS",
    "Interval",
    "NodeCost",
    "Prediction",
    "describe_prediction",
    "exact_values",
    "explain",
    "floored_where",
    "interval_of_node",
    "is_exact_node",
    "node_bits",
    "node_cost",
    "param_interval",
    "predict",
    "predicted_bits",
    "program_bits",
    "ranges",
    "sample_ranges",
    "widen_observed",
]
