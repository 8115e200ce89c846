"""Per-node dtypes made explicit: a program whose chosen nodes run in another float dtype, with
`to` casts inserted around them (the precision stage's output, and `lower(..., dtypes=)`).

In: a `Program` and a map value id -> short dtype name. Out: the new program and the id map.
Pure IR; no torch.
"""

from __future__ import annotations

from typing import Any, Mapping

from hnfc.foundation.dtypes import DTYPES
from hnfc.foundation.types import TensorType
from hnfc.ir.program import Builder, Program

COMPUTE_KINDS = frozenset({"pointwise", "reduction", "nn", "linalg"})


def float_tensor(t: Any) -> bool:
    return isinstance(t, TensorType) and DTYPES[t.dtype].is_float


def is_compute(program: Program, i: int) -> bool:
    """A float node that computes (and so can be run in another float dtype)."""
    n = program.nodes[i]
    if n.opdef.kind not in COMPUTE_KINDS or not float_tensor(n.type):
        return False
    return any(a is not None and float_tensor(program.nodes[a].type) and program.nodes[a].op != "const" for a in n.args)


def with_dtypes(program: Program, dtypes: Mapping[int, str]) -> tuple[Program, dict[int, int]]:
    """The program with node i computed in `dtypes[i]` (float compute nodes; others ignored).

    Float arguments are cast to the node's dtype and results cast back where a user or an output
    wants the original; shape ops follow their argument. Returns (new program, old id -> new id).
    """
    b = Builder()
    new: dict[int, int] = {}

    def cast(v: int, d: str) -> int:
        t = b.nodes[v].type
        if not float_tensor(t) or t.dtype == d:
            return v
        return b.add("to", [v], {"dtype": d})

    for i, n in enumerate(program.nodes):
        orig_args = [None if a is None else new[a] for a in n.args]
        if n.opdef.kind == "leaf":
            new[i] = b.add(n.op, orig_args, n.attr, n.type)
            continue
        d = dtypes.get(i)
        if d is not None and d != n.type.dtype and is_compute(program, i):
            args = [None if a is None else a if program.nodes[n.args[k]].op == "const" else cast(a, d) for k, a in enumerate(orig_args)]
            try:
                v = b.add(n.op, args, n.attr)
            except Exception:
                v = None
            if v is not None and b.nodes[v].type == n.type.with_dtype(d):
                new[i] = v
                continue
        if n.opdef.kind == "shape" and n.op != "cat" and float_tensor(n.type):
            v = b.add(n.op, orig_args, n.attr)  # follows its argument's dtype
            if b.nodes[v].type.shape == n.type.shape:
                new[i] = v
                continue
        args = [None if a is None else cast(a, program.nodes[n.args[k]].type.dtype) if float_tensor(program.nodes[n.args[k]].type) else a for k, a in enumerate(orig_args)]
        new[i] = b.add(n.op, args, n.attr, n.type)
    outs = [cast(new[o], program.nodes[o].type.dtype) if float_tensor(program.nodes[o].type) else new[o] for o in program.outputs]
    return b.build(outs, program.params, program.meta), new
