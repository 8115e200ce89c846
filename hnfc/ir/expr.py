"""Expression form of IR programs: `log(1 + x)` <-> a one-output program.

`parse_expr("log(1 + x)", {"x": TensorType((16,), "f32")})` builds the program (names are inputs,
numbers are constants, `+ - * / **` and unary minus are add/sub/mul/div/pow/neg, calls are ops
with keyword attributes). `format_expr(program, value)` prints a value back the same way, with
ops as calls; it is what reports and golden tests show.
"""

from __future__ import annotations

import ast
from typing import Mapping

from hnfc import ops
from hnfc.ir.program import Builder, IRError, Program
from hnfc.ir.format import format_value
from hnfc.ir.text import _literal
from hnfc.foundation.types import TensorType

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div"}


def parse_expr(text: str, inputs: Mapping[str, TensorType], *, const_dtype: str | None = None) -> Program:
    """One-output program for an expression over the named inputs (in the mapping's order)."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise IRError(f"cannot parse expression {text!r}: {e.msg}") from None
    b = Builder()
    names = {name: b.input(name, t) for name, t in inputs.items()}
    dtype = const_dtype or next(iter(inputs.values())).dtype

    def build(node: ast.AST) -> int:
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise IRError(f"{text!r}: unknown input {node.id!r} (declared: {sorted(names)})")
            return names[node.id]
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return b.const(node.value, dtype)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            if isinstance(node.operand, ast.Constant):
                return b.const(-node.operand.value, dtype)
            return b.add("neg", [build(node.operand)])
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return b.add(_BINOPS[type(node.op)], [build(node.left), build(node.right)])
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            return b.add("pow", [build(node.left)], {"exponent": _literal(node.right)})
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id not in ops.OPS:
                raise IRError(f"{text!r}: unknown op {node.func.id!r}")
            args = [None if isinstance(a, ast.Name) and a.id == "_" else build(a) for a in node.args]
            opdef = ops.OPS[node.func.id]
            if all(i in opdef.optional for i in range(len(args), max(opdef.arity, 0))):
                args += [None] * (opdef.arity - len(args))  # trailing optional arguments left out
            return b.add(node.func.id, args, {k.arg: _literal(k.value) for k in node.keywords})
        raise IRError(f"{text!r}: cannot read {ast.unparse(node)!r}")

    return b.build([build(tree)])


def format_expr(program: Program, value: int, depth: int = 6) -> str:
    """A value as a nested call expression over inputs, parameters and constants."""
    n = program.nodes[value]
    if n.op in ("input", "param"):
        return n.attr["name"]
    if n.op == "const":
        return format_value(n.attr["value"])
    if depth == 0:
        return "…"
    args = ["_" if a is None else format_expr(program, a, depth - 1) for a in n.args]
    if n.op == "opaque":
        return f"{n.attr['target'].removeprefix('aten.')}({', '.join(args)})"
    defaults = n.opdef.attrs
    attrs = [f"{k}={format_value(v)}" for k, v in n.attrs if repr(v) != repr(defaults[k])]
    return f"{n.op}({', '.join(args + attrs)})"
