"""hnfc's SSA IR: typed, hash-consed nodes over the op table, with a text form that parses back."""

from hnfc.ir.expr import format_expr, parse_expr
from hnfc.ir.program import Builder, IRError, Node, Program, live_subprogram
from hnfc.ir.format import format_program
from hnfc.ir.text import parse_program, parse_type
from hnfc.ir.validate import problems, validate
from hnfc.foundation.types import TensorType, TupleType

__all__ = [
    "Builder",
    "IRError",
    "Node",
    "Program",
    "TensorType",
    "TupleType",
    "format_expr",
    "format_program",
    "live_subprogram",
    "parse_expr",
    "parse_program",
    "parse_type",
    "problems",
    "validate",
]
