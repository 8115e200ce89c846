"""Dtype legalization: finite constants that round to ±inf in the dtype that uses them → ±finfo.max.

In: a `Program` whose node types carry the dtype each node finally computes in: the precision
stage's output (casts inserted; for a bare dtype map, `hnfc.precision.assignment.with_dtypes` first).
Out: a new `Program` with those constants replaced, and one `Legalization` note per replacement
(the report lists each as a rewrite: `hnfc.report.records.legalization_rewrite`).
Where: the last stage of `hnfc.pipeline.optimize_program`, after precision assignment, when every
node's final dtype is known (`Config.legalize`, on by default); the precision stage measures its
candidates legalized, so what it measured is what runs. It is not an e-graph rule: the
replacement is not a real-number identity, it depends on the dtype a node runs in.

Why. Attention masks are written with constants like `torch.finfo(torch.float32).min`, -1e9 or
-1e30. In bfloat16 (max 3.39e38) or float16 (max 65504) they round to -inf, and then a fully
masked softmax row is NaN, `0 * -inf` is NaN, and `full`/`clamp` with such a value raise. The
legal value, ±finfo(dtype).max, is what HF models use (`finfo(dtype).min`): still "minus
infinity" for a softmax, but finite.

Where torch really rounds a constant into a dtype d (and so where we replace it):
- A `to(·, d)` or `where(·, ·, ·)` of dtype d rounds the `const`/`full` values that reach it
  through value-preserving ops (where's branches, shape ops, detach, widening casts): its
  result holds them as elements of d. The cone is re-emitted for this use only (hash-consing
  keeps every other user on the original nodes): `where(MASK, -1e9, 0.0).to(float16)`.
- `add`/`sub` of dtype d with an inline scalar: torch adds in float32 (opmath) and rounds, so
  `x + (-1e9)` is -inf in float16 for every x; with -65504 it is finite.
- `mul` of dtype d with an inline scalar, only when the other factor is integer-valued (a 0/1
  mask: `(1 - m) * finfo(f32).min`). Then every element is 0 or at least 1 in magnitude, so
  the product overflowed anyway and no finite result changes. A scaling constant times a
  fraction (`x * 1e5` with x = 1e-3 in float16 is a finite 100) is left alone.
- `clamp` bounds outside d's range (torch raises "cannot be converted without overflow").
Never touched: ±inf and NaN constants (the user meant them), divisors, non-constant values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from hnfc import ops
from hnfc.foundation.dtypes import DTYPES
from hnfc.ir.program import Builder, Program
from hnfc.foundation.types import TensorType

RULE = "legalize-constant"  # the name the report lists these replacements under
LEAVES = frozenset(name for name, op in ops.OPS.items() if op.constant)
# ops that pass their float arguments' values through unchanged (so a constant reaching a
# rounding consumer through them is rounded there); `where`'s condition is not a value
PASS_THROUGH = frozenset(name for name, op in ops.OPS.items() if op.kind == "shape") | {"detach"}
INTEGRAL_OPS = frozenset(name for name, op in ops.OPS.items() if op.integral)  # integer in, integer out


@dataclass(frozen=True)
class Legalization:
    user: int  # value id, in the legalized program, of the node that rounds the constant
    op: str  # that node's op
    source: str  # what held the constant: "const", "full", "clamp.min", "clamp.max"
    old: float
    new: float
    dtype: str  # the dtype it was rounded into (short name)


def overflows(value, dtype: str) -> bool:
    """A finite number that rounds to ±inf in float dtype `dtype` (round to nearest even)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    d = DTYPES[dtype]
    if not d.is_float or not math.isfinite(value):
        return False
    _, e = math.frexp(d.max)  # max = m·2^e, m in [0.5, 1): its ulp is 2^(e - p)
    threshold = d.max + 2.0 ** (e - d.mantissa) / 2  # halfway to the next power: ties go to inf
    return abs(value) >= threshold  # (inf for float64 itself: nothing finite overflows it)


def legal_value(value: float, dtype: str) -> float:
    return math.copysign(DTYPES[dtype].max, value)


def _float(t) -> bool:
    return isinstance(t, TensorType) and DTYPES[t.dtype].is_float


def _check(program: Program) -> None:
    if not isinstance(program, Program):
        raise TypeError(f"legalize: expected an hnfc Program, got {type(program).__name__}")


def integral_values(program: Program) -> list[bool]:
    """Per value: every element is an integer (so 0 or at least 1 in magnitude). Integer and
    bool tensors, casts of them, integral constants and parameters, and sums, differences and
    products, shape ops and `where` of such values."""
    out: list[bool] = []
    for n in program.nodes:
        t = n.type
        if isinstance(t, TensorType) and not DTYPES[t.dtype].is_float:
            ok = DTYPES[t.dtype].kind in ("int", "bool")
        elif n.op in LEAVES:
            v = n.attr["value"]
            ok = isinstance(v, (int, float)) and math.isfinite(v) and float(v).is_integer()
        elif n.op == "param":
            ok = _integral_tensor(program.params.get(n.attr["name"]))
        elif n.op in INTEGRAL_OPS or n.op in PASS_THROUGH or n.op == "to":
            ok = bool(n.args) and all(a is None or out[a] for a in n.args)
        elif n.op == "where":
            ok = all(out[a] for a in n.args[1:] if a is not None)
        else:
            ok = False
        out.append(ok)
    return out


def _integral_tensor(t) -> bool:
    if t is None or not hasattr(t, "is_floating_point"):
        return False
    if not t.is_floating_point():
        return True
    import torch  # only parameters (torch tensors) get here

    with torch.no_grad():
        head = t.reshape(-1)[:4096]  # trained weights fail on their first elements: no full scan
        if not bool(((head == head.round()) & head.isfinite()).all()):
            return False
        return bool(((t == t.round()) & t.isfinite()).all())


def legalize(program: Program) -> tuple[Program, list[Legalization]]:
    """The program with every finite constant that rounds to ±inf where it is used replaced by
    ±finfo(dtype).max (module doc for where that is), and one note per replacement. Value ids
    after a replaced constant shift (the new constant is a new node); `program` is unchanged and
    returned as is when nothing needs replacing."""
    _check(program)
    nodes = program.nodes
    integral = integral_values(program)
    b = Builder()
    new: dict[int, int] = {}
    memo: dict[tuple[int, str], tuple[int, tuple]] = {}  # (value, dtype) -> (new id, notes)

    def leaf(a: int, d: str) -> tuple[int, tuple]:
        """(new id, notes) of constant leaf a used in dtype d."""
        n = nodes[a]
        if n.op not in LEAVES or not _float(n.type) or not overflows(n.attr["value"], d):
            return new[a], ()
        v = n.attr["value"]
        fixed = legal_value(v, d)
        return b.add(n.op, (), {**n.attr, "value": fixed}, n.type), ((n.op, v, fixed, d),)

    def through(a: int, d: str) -> tuple[int, tuple]:
        """Value a as a consumer rounding into d sees it, with notes: the constants reaching it
        unchanged through pass-through ops legalized for d (re-emitted for this use only;
        hash-consing shares whatever did not change)."""
        if (a, d) not in memo:
            n = nodes[a]
            widening = n.op == "to" and _float(n.type) and DTYPES[n.type.dtype].max >= DTYPES[d].max
            if n.op in LEAVES:
                memo[a, d] = leaf(a, d)
            elif n.op == "where" or n.op in PASS_THROUGH or widening:
                first = 1 if n.op == "where" else 0  # where's condition is no value
                parts = [(new[x], ()) if x is None or k < first or not _float(nodes[x].type) else through(x, d) for k, x in enumerate(n.args)]
                args = [p[0] for p in parts]
                same = all(x is None or y == new[x] for x, y in zip(n.args, args))
                memo[a, d] = (new[a], ()) if same else (b.add(n.op, args, n.attr, n.type), sum((p[1] for p in parts), ()))
            else:
                memo[a, d] = (new[a], ())
        return memo[a, d]

    notes: list[Legalization] = []
    for i, n in enumerate(nodes):
        parts = [(None if a is None else new[a], ()) for a in n.args]
        attrs = n.attr
        if _float(n.type) and n.opdef.kind != "leaf":
            d = n.type.dtype  # the dtype it computes in, casts made explicit by the precision stage
            if n.op in ("to", "where"):
                first = 1 if n.op == "where" else 0
                parts = [through(a, d) if a is not None and k >= first and _float(nodes[a].type) else p for k, (a, p) in enumerate(zip(n.args, parts))]
            elif n.op in ("add", "sub"):
                parts = [leaf(a, d) if a is not None and nodes[a].op == "const" else p for a, p in zip(n.args, parts)]
            elif n.op == "mul" and len(n.args) == 2 and None not in n.args:
                x, y = n.args
                if nodes[y].op == "const" and integral[x]:
                    parts[1] = leaf(y, d)
                elif nodes[x].op == "const" and integral[y]:
                    parts[0] = leaf(x, d)
            elif n.op == "clamp":
                attrs = dict(n.attr)
                for key in ("min", "max"):
                    if overflows(attrs[key], d):
                        attrs[key] = legal_value(n.attr[key], d)
                        parts.append((None, ((f"clamp.{key}", n.attr[key], attrs[key], d),)))
        new[i] = b.add(n.op, [p[0] for p in parts[: len(n.args)]], attrs, n.type)
        notes += [Legalization(new[i], n.op, *note) for note in dict.fromkeys(note for p in parts for note in p[1])]
    if not notes:
        return program, []
    out, remap = _prune(b.build([new[o] for o in program.outputs], program.params, program.meta))
    return out, [replace(n, user=remap[n.user]) for n in notes]


def _prune(program: Program) -> tuple[Program, dict[int, int]]:
    """Without the nodes only the replaced constants fed (live_subprogram, keeping its renumbering)."""
    live = set(program.outputs) | set(program.inputs)
    for i in range(len(program.nodes) - 1, -1, -1):
        if i in live:
            live.update(a for a in program.nodes[i].args if a is not None)
    b = Builder()
    remap: dict[int, int] = {}
    for i, n in enumerate(program.nodes):
        if i in live:
            remap[i] = b.add(n.op, [None if a is None else remap[a] for a in n.args], n.attr, n.type)
    return b.build([remap[o] for o in program.outputs], program.params, program.meta), remap


__all__ = ["Legalization", "integral_values", "legal_value", "legalize", "overflows"]
