"""Range analysis and the curvature cost model.

In: an IR `Program` (hnfc.ir), declared input ranges, observed ranges. Out: an `Interval` per
value (`ranges`), predicted bits lost per node and per program (`node_bits`, `program_bits`,
`explain`). The per-op formulas live in the op table (`OpDef.interval`, `.cond`, `.hazard`,
written in hnfc/ops/bounds.py); this package applies them to programs and e-graph nodes.

`hnfc.analysis.intervals` is a leaf module (the op table imports it), so this package imports its
other modules lazily: importing `hnfc.analysis.intervals` must not pull in the IR.
"""

from __future__ import annotations

import importlib

from hnfc.analysis.intervals import Interval

_LAZY = {
    "ranges": "hnfc.analysis.propagate",
    "interval_of_node": "hnfc.analysis.propagate",
    "sample_ranges": "hnfc.analysis.propagate",
    "widen_observed": "hnfc.analysis.propagate",
    "HAZARD_BITS": "hnfc.analysis.curvature",
    "NodeCost": "hnfc.analysis.curvature",
    "node_cost": "hnfc.analysis.curvature",
    "node_bits": "hnfc.analysis.curvature",
    "program_bits": "hnfc.analysis.curvature",
    "predicted_bits": "hnfc.analysis.curvature",
    "explain": "hnfc.analysis.curvature",
    "exact_values": "hnfc.analysis.curvature",
    "is_exact_node": "hnfc.analysis.curvature",
}

__all__ = ["Interval", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hnfc.analysis' has no attribute {name!r}")
