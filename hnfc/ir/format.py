"""The IR's printer: one SSA line per node, attributes that differ from their defaults only
(`format_program`; `hnfc.ir.text.parse_program` reads it back). `Program.__str__` uses it, so it
imports nothing of the IR: a program is read through its nodes' fields.
"""

from __future__ import annotations

import math
from typing import Any

from hnfc.foundation.types import Type


def format_value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _quote(v)
    if isinstance(v, (tuple, list)):
        inner = ", ".join(format_value(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    return repr(v)


def _quote(s: str) -> str:
    """A double-quoted Python string literal that stays on one line (what `ast` parses back)."""
    out = []
    for c in s:
        if c in '\\"':
            out.append("\\" + c)
        elif c.isprintable():  # not: control characters, line and paragraph separators
            out.append(c)
        else:
            o = ord(c)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    return '"' + "".join(out) + '"'


def format_type(t: Type) -> str:
    return str(t)


def format_node(i: int, program) -> str:
    n = program.nodes[i]
    defaults = n.opdef.attrs
    parts = ["_" if a is None else f"%{a}" for a in n.args]
    parts += [f"{k}={format_value(v)}" for k, v in n.attrs if k not in defaults or _differs(v, defaults[k])]
    return f"%{i} = {n.op}({', '.join(parts)}) : {format_type(n.type)}"


def _differs(a, b) -> bool:
    return type(a) is not type(b) or repr(a) != repr(b)


def format_program(program) -> str:
    lines = [format_node(i, program) for i in range(len(program.nodes))]
    lines.append("return " + ", ".join(f"%{o}" for o in program.outputs))
    return "\n".join(lines) + "\n"
