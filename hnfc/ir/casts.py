"""Per-node dtypes made explicit: a program whose chosen nodes run in another float dtype, with
`to` casts inserted around them (the precision stage's output, and `lower(..., dtypes=)`).

In: a `Program` and a map value id -> short dtype name. Out: the new program and the id map.
Pure IR; no torch.

Only casts that change a value's rounding or a kernel's dtype are inserted: values are rearranged
(shape ops, and opaque calls that only split their argument, `REARRANGING`) in whatever dtype
they carry, so a 16-bit product's result reaches the next 16-bit product without a round trip
through float32; and a binary op that torch computes in the promoted dtype (`PROMOTING`) reads a
narrower operand as it is, since widening it first is exact and is what its kernel does anyway.
Each cast left out is a kernel and a temporary fewer per call, with the same values.
"""

from __future__ import annotations

from typing import Any, Mapping

from hnfc.foundation.dtypes import DTYPES
from hnfc.foundation.types import TensorType, TupleType
from hnfc.ir.program import Builder, Program

COMPUTE_KINDS = frozenset({"pointwise", "reduction", "nn", "linalg"})
# opaque aten calls whose results are pieces of their (first) argument: exact in any dtype
REARRANGING = frozenset({"aten.split.Tensor", "aten.split_with_sizes.default", "aten.unbind.int", "aten.chunk.default", "aten.unsafe_split.Tensor"})
# binary ops torch computes in the promoted dtype of their tensor operands (TensorIterator), so
# add(x_f32, y_bf16) is add(x_f32, y_bf16.float()) bit for bit
PROMOTING = frozenset({"add", "sub", "mul", "div"})


def float_tensor(t: Any) -> bool:
    return isinstance(t, TensorType) and DTYPES[t.dtype].is_float


def is_compute(program: Program, i: int) -> bool:
    """A float node that computes (and so can be run in another float dtype)."""
    n = program.nodes[i]
    if n.opdef.kind not in COMPUTE_KINDS or not float_tensor(n.type):
        return False
    return any(a is not None and float_tensor(program.nodes[a].type) and program.nodes[a].op != "const" for a in n.args)


def widens_exactly(src: str, dst: str) -> bool:
    """Every `src` value, subnormals included, is a `dst` value (bf16 -> f32, f16 -> f64, ...)."""
    s, d = DTYPES[src], DTYPES[dst]
    return s.is_float and d.is_float and s.mantissa <= d.mantissa and s.max <= d.max and s.qmin >= d.qmin


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
            v = _typed(b, n, args, n.type.with_dtype(d))
            if v is not None:
                new[i] = v
                continue
        if n.opdef.kind == "shape" and n.op != "cat" and float_tensor(n.type):
            v = b.add(n.op, orig_args, n.attr)  # follows its argument's dtype
            if b.nodes[v].type.shape == n.type.shape:
                new[i] = v
                continue
        v = _rearranged(b, program, i, orig_args)
        if v is not None:
            new[i] = v
            continue
        if n.op in PROMOTING and float_tensor(n.type):
            # a narrower operand read as it is: the kernel widens it itself (module doc); only
            # where torch's promotion, which the IR's type rule follows, still gives n's type
            kept = [a if a is None or not float_tensor(b.nodes[a].type) or widens_exactly(b.nodes[a].type.dtype, n.type.dtype) else cast(a, program.nodes[n.args[k]].type.dtype) for k, a in enumerate(orig_args)]
            v = _typed(b, n, kept, n.type)
            if v is not None:
                new[i] = v
                continue
        args = [None if a is None else cast(a, program.nodes[n.args[k]].type.dtype) if float_tensor(program.nodes[n.args[k]].type) else a for k, a in enumerate(orig_args)]
        new[i] = b.add(n.op, args, n.attr, n.type)
    outs = [cast(new[o], program.nodes[o].type.dtype) if float_tensor(program.nodes[o].type) else new[o] for o in program.outputs]
    return b.build(outs, program.params, program.meta), new


def _typed(b: Builder, n, args: list, want: Any) -> int | None:
    """n's op on `args`, added only when its type rule gives `want` (no dead node otherwise)."""
    try:
        t = b.infer(n.opdef, tuple(args), dict(n.attr))
    except Exception:
        return None
    return b.add(n.op, args, n.attr, t) if t == want else None


def _rearranged(b: Builder, program: Program, i: int, args: list) -> int | None:
    """Node i rebuilt on its arguments' new dtypes when it only rearranges them: an opaque
    `REARRANGING` call (its pieces take the argument's dtype) or a `getitem` of such a call's
    result. None when it is not one, or nothing changed."""
    n = program.nodes[i]
    if n.op == "getitem" and args and args[0] is not None:
        src = program.nodes[n.args[0]]
        if src.op == "opaque" and src.attr.get("target") in REARRANGING and b.nodes[args[0]].type != src.type:
            return b.add("getitem", args, n.attr)
        return None
    if n.op != "opaque" or n.attr.get("target") not in REARRANGING or not isinstance(n.type, TupleType) or not args or args[0] is None:
        return None
    first, src_t = b.nodes[args[0]].type, program.nodes[n.args[0]].type
    if not (float_tensor(first) and float_tensor(src_t)) or first.dtype == src_t.dtype:
        return None
    if any(a is not None and k > 0 and float_tensor(program.nodes[n.args[k]].type) for k, a in enumerate(args)):
        return None  # a second float tensor argument: not a plain split of the first
    if not all(t is not None and t.dtype == src_t.dtype for t in n.type.items):
        return None
    return b.add(n.op, args, n.attr, TupleType(tuple(t.with_dtype(first.dtype) for t in n.type.items)))
