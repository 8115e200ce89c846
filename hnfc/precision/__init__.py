"""Precision: a dtype per node (`select`: requirements, assignment, validation by measurement) and
legalization of constants for the final dtypes (`legalize`). Beside verify; below the report."""

from hnfc.precision.assignment import (
    MENUS,
    Need,
    PrecisionResult,
    Promotion,
    assign,
    dtype_map,
    flop_share,
    measure,
    menu,
    node_flops,
    normwise_error,
    own_bits,
    reference_truths,
    requirements,
    select,
    truths,
)
from hnfc.precision.legalize import legalize

__all__ = [
    "MENUS",
    "Need",
    "PrecisionResult",
    "Promotion",
    "assign",
    "dtype_map",
    "flop_share",
    "legalize",
    "measure",
    "menu",
    "node_flops",
    "normwise_error",
    "own_bits",
    "reference_truths",
    "requirements",
    "select",
    "truths",
]
