"""Validity check for IR programs.

In: a `Program`. Out: nothing, or an IRError listing every problem with the value it concerns:
unknown op, bad arity or attributes, forward references, a recorded type that disagrees with
the op's type rule, parameters without values, outputs that do not exist.
"""

from __future__ import annotations

from hnfc import ops
from hnfc.ir.program import IRError, Program
from hnfc.foundation.types import TensorType


def problems(program: Program, *, need_params: bool = False) -> list[str]:
    out: list[str] = []
    names: set[str] = set()
    for i, n in enumerate(program.nodes):
        where = f"%{i} = {n.op}"
        if n.op not in ops.OPS:
            out.append(f"{where}: unknown op")
            continue
        opdef = ops.OPS[n.op]
        try:
            opdef.check_call(n.args, n.attr)
        except ValueError as e:
            out.append(f"{where}: {e}")
            continue
        missing = set(opdef.attrs) - set(n.attr)
        if missing:
            out.append(f"{where}: missing attributes {sorted(missing)}")
        bad = [a for a in n.args if a is not None and not 0 <= a < i]
        if bad:
            out.append(f"{where}: uses {', '.join(f'%{a}' for a in bad)}, not defined before it")
            continue
        if n.op == "input":
            if n.attr["name"] in names:
                out.append(f"{where}: duplicate input name {n.attr['name']!r}")
            names.add(n.attr["name"])
        if n.op == "param" and need_params and n.attr["name"] not in program.params:
            out.append(f"{where}: no value for parameter {n.attr['name']!r}")
        arg_types = [None if a is None else program.nodes[a].type for a in n.args]
        if opdef.infer is not None and all(t is None or isinstance(t, TensorType) for t in arg_types) and n.op != "getitem":
            try:
                inferred = opdef.infer(arg_types, n.attr)
            except Exception as e:
                out.append(f"{where}: arguments do not type: {e}")
                continue
            if inferred != n.type and not _symbolically_equal(inferred, n.type):
                out.append(f"{where}: recorded type {n.type} but the op's rule gives {inferred}")
    for o in program.outputs:
        if not 0 <= o < len(program.nodes):
            out.append(f"output %{o} does not exist")
    return out


def _symbolically_equal(a, b) -> bool:
    """Types that agree except where either side has a symbolic (string) dimension."""
    if not (isinstance(a, TensorType) and isinstance(b, TensorType)) or a.dtype != b.dtype or a.rank != b.rank:
        return False
    return all(x == y or isinstance(x, str) or isinstance(y, str) for x, y in zip(a.shape, b.shape))


def validate(program: Program, *, need_params: bool = False) -> Program:
    found = problems(program, need_params=need_params)
    if found:
        raise IRError("invalid program:\n  " + "\n  ".join(found))
    return program
