"""The IR's text form: one SSA line per node, attributes that differ from their defaults only.

    %0 = input(name="x") : f32[4,8]
    %1 = const(value=1.0) : f32[]
    %2 = add(%0, %1) : f32[4,8]
    %3 = log(%2) : f32[4,8]
    return %3

`format_program` (hnfc/ir/format.py) and `parse_program` are inverses (golden tests rely on it). An omitted optional
argument prints as `_`. Parameter values and pytree specs are not part of the text.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any

from hnfc.ir.program import Builder, IRError, Program
from hnfc.foundation.types import TensorType, TupleType, Type


# ---------------------------------------------------------------------------------------------

_LINE = re.compile(r"^%(\d+)\s*=\s*([A-Za-z_][\w]*)\((.*)\)\s*:\s*(.+)$")
_TENSOR_TYPE = re.compile(r"^(\w+)\[([^\]]*)\]$")
# a value reference %N, or a string literal (left alone: "%N" inside a string is text)
_VALUE_REF = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|%(\d+)')
_NAMES = {"inf": math.inf, "nan": math.nan, "None": None, "True": True, "False": False}


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _literal(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e) for e in node.elts)
    raise ValueError(f"not a literal: {ast.unparse(node)}")


def parse_type(text: str) -> Type:
    text = text.strip()
    if text.startswith("("):
        inner = text[1:-1].strip()
        items = [s.strip() for s in re.split(r",\s*(?![^\[]*\])", inner) if s.strip()]
        return TupleType(tuple(None if s == "_" else parse_type(s) for s in items))
    m = _TENSOR_TYPE.match(text)
    if not m:
        raise ValueError(f"bad type {text!r}")
    dims = tuple(int(d) if re.fullmatch(r"-?\d+", d) else d for d in (s.strip() for s in m.group(2).split(",")) if d)
    return TensorType(dims, m.group(1))


def parse_program(text: str) -> Program:
    """Parse the text form; raises IRError naming the line that is wrong."""
    b = Builder()
    outputs: list[int] | None = None
    ids: dict[int, int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            if line.startswith("return"):
                outputs = [ids[int(t.strip().lstrip("%"))] for t in line[len("return") :].split(",") if t.strip()]
                continue
            m = _LINE.match(line)
            if not m:
                raise ValueError("expected '%N = op(args) : type' or 'return %a, %b'")
            num, op, body, type_text = int(m.group(1)), m.group(2), m.group(3), m.group(4)
            if num in ids:
                raise ValueError(f"%{num} is defined twice")
            body = _VALUE_REF.sub(lambda m: m.group(0) if m.group(1) is None else f"v_{m.group(1)}", body)
            call = ast.parse("f(" + body + ")", mode="eval").body
            args = []
            for a in call.args:
                if isinstance(a, ast.Name) and a.id == "_":
                    args.append(None)
                elif isinstance(a, ast.Name) and a.id.startswith("v_"):
                    args.append(ids[int(a.id[2:])])
                else:
                    raise ValueError(f"argument {ast.unparse(a)} is not a value")
            attrs = {k.arg: _literal(k.value) for k in call.keywords}
            ids[num] = b.add(op, args, attrs, parse_type(type_text))
        except KeyError as e:
            raise IRError(f"line {lineno}: value %{e.args[0]} is not defined: {raw.strip()}") from None
        except (ValueError, SyntaxError) as e:
            raise IRError(f"line {lineno}: {e}: {raw.strip()}") from None
    if outputs is None:
        raise IRError("missing 'return' line")
    return b.build(outputs)
